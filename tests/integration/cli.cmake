# The mpb command line, run as a child process against a real broker.
mpb_integration_test(test_cli test_cli.c TIMEOUT 90)
target_link_libraries(test_cli PRIVATE PkgConfig::JANSSON)
# The operator's courtesies: help, --version, watch, the key hint, task-done, the prompt (a pty).
mpb_integration_test(test_cli2 test_cli2.c TIMEOUT 120)
target_compile_definitions(test_cli2 PRIVATE MPBROKER_VERSION="${PROJECT_VERSION}")
target_link_libraries(test_cli2 PRIVATE PkgConfig::JANSSON)
