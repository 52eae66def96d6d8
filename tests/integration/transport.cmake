# transport.cmake - issue 11 (safe on an open network), the transport: CURVE by default on
# tcp://, nothing readable on the wire, the bounds for peers without a session against raw TCP
# peers, and the output limit. Included by CMakeLists.txt in this folder.
mpb_integration_test(test_transport test_transport.c TIMEOUT 300)
