# mpb monitor, and a connect that fails fast, run as child processes against a real broker.
mpb_integration_test(test_cli3 test_cli3.c TIMEOUT 120)
target_link_libraries(test_cli3 PRIVATE PkgConfig::JANSSON)
