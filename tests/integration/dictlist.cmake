# dictlist.cmake - integration tests of every dict and list op against a real mpbrokerd
# (included by CMakeLists.txt in this folder).
mpb_integration_test(test_dict test_dict.c TIMEOUT 90)
mpb_integration_test(test_list test_list.c TIMEOUT 90)
