# hash.cmake - the keyed hash (proto/hash.c) and the broker's omap under keys built to collide
# under the hash it replaced. Included by tests/unit/CMakeLists.txt.
mpb_unit_test(test_hash test_hash.c ${PROJECT_SOURCE_DIR}/broker/omap.c
  ${PROJECT_SOURCE_DIR}/broker/util.c LIBS OpenSSL::Crypto)
target_include_directories(test_hash PRIVATE ${PROJECT_SOURCE_DIR}/broker)
