# libmpb for C programs: the msgpack builder and reader, MPB_ENDPOINT, error texts.
mpb_integration_test(test_libmpb test_libmpb.c)
