# Hostile and malformed input against a real broker, through a raw protocol client.
mpb_integration_test(test_badinput test_badinput.c TIMEOUT 90)
