# hash.cmake - unit tests of issue 11 (safe on an open network): the keyed hash (proto/hash.c)
# and the broker's omap under keys built to collide under the hash it replaced, and the rate
# limit of log lines about peers. Included by tests/unit/CMakeLists.txt.
mpb_unit_test(test_hash test_hash.c ${PROJECT_SOURCE_DIR}/broker/omap.c
  ${PROJECT_SOURCE_DIR}/broker/util.c LIBS OpenSSL::Crypto mpbcommon)
target_include_directories(test_hash PRIVATE ${PROJECT_SOURCE_DIR}/broker)
# The rate limit of the broker's lines about peers (common/log.c, in mpbcommon).
mpb_unit_test(test_lograte test_lograte.c LIBS mpbcommon)
