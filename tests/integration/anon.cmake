# anon.cmake - anonymous objects (obj.new, obj.ref, obj.unref) against a real mpbrokerd, from
# several processes (included by CMakeLists.txt in this folder).
mpb_integration_test(test_anon test_anon.c TIMEOUT 120)
