# proto.cmake - unit tests of proto/ (mpbproto): frames, msgpack validation, codec, canonical
# encoding and ordering, the authkey handshake and MACs. Included by tests/unit/CMakeLists.txt.
mpb_unit_test(test_frame test_frame.c)
mpb_unit_test(test_mpcheck test_mpcheck.c)
mpb_unit_test(test_codec test_codec.c)
mpb_unit_test(test_auth test_auth.c LIBS OpenSSL::Crypto)
mpb_unit_test(test_curve test_curve.c spec.c LIBS OpenSSL::Crypto PkgConfig::ZMQ)
target_compile_definitions(test_curve PRIVATE
  MPB_PROTOCOL_MD="${PROJECT_SOURCE_DIR}/proto/PROTOCOL.md")
mpb_unit_test(test_seal test_seal.c spec.c LIBS OpenSSL::Crypto)
target_compile_definitions(test_seal PRIVATE
  MPB_PROTOCOL_MD="${PROJECT_SOURCE_DIR}/proto/PROTOCOL.md")
