# secmisc.cmake - issue 11 (safe on an open network): hash flooding, authkey file hygiene,
# rate-limited logs, session limits and the HTTP endpoint under a slowloris. Included by
# CMakeLists.txt in this folder.
mpb_integration_test(test_hashflood test_hashflood.c TIMEOUT 180)
mpb_integration_test(test_keyfile test_keyfile.c TIMEOUT 120)
mpb_integration_test(test_seclimits test_seclimits.c TIMEOUT 180)
mpb_integration_test(test_httpsec test_httpsec.c TIMEOUT 120)
