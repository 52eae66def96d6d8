# pipe.cmake - integration tests of Pipe against a real mpbrokerd, from several processes
# (included by CMakeLists.txt in this folder).
mpb_integration_test(test_pipe test_pipe.c TIMEOUT 180)
