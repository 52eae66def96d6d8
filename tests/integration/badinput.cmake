# Hostile and malformed input against a real broker, through a raw protocol client.
mpb_integration_test(test_badinput test_badinput.c rawclient.c TIMEOUT 90)
target_link_libraries(test_badinput PRIVATE PkgConfig::ZMQ)
