# The mpb command line, run as a child process against a real broker.
mpb_integration_test(test_cli test_cli.c TIMEOUT 90)
target_link_libraries(test_cli PRIVATE PkgConfig::JANSSON)
