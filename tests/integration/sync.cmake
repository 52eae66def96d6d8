# sync.cmake - integration tests of queues and the synchronisation kinds against a real
# mpbrokerd, from many processes (included by CMakeLists.txt in this folder).
mpb_integration_test(test_queue test_queue.c TIMEOUT 300)
mpb_integration_test(test_locks test_locks.c TIMEOUT 120)
mpb_integration_test(test_sync test_sync.c TIMEOUT 120)
mpb_integration_test(test_expiry test_expiry.c TIMEOUT 120)
mpb_integration_test(test_waiters test_waiters.c TIMEOUT 300)
# Clients across cuts and restarts; the reply cache answers what is sent again (issue 12).
mpb_integration_test(test_reconnect test_reconnect.c TIMEOUT 300)
# Reliable get: an item whose consumer dies before task_done goes back to the queue.
mpb_integration_test(test_reliable test_reliable.c TIMEOUT 120)
# --max-memory, --max-objects, and the broker under ulimit -v.
mpb_integration_test(test_memory test_memory.c TIMEOUT 300)
