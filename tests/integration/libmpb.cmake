# libmpb for C programs: the msgpack builder and reader, MPB_ENDPOINT, error texts.
mpb_integration_test(test_libmpb test_libmpb.c)
# Callbacks while the caller sleeps: the callback thread, and mpb_fd() + mpb_process().
mpb_integration_test(test_callbacks test_callbacks.c TIMEOUT 180)
set_property(TEST test_callbacks APPEND PROPERTY LABELS pool)
# The pipelined form of every op, against its synchronous form.
mpb_integration_test(test_async_ops test_async_ops.c)
