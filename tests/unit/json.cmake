# test_json: the CLI's JSON <-> msgpack conversion (client/cli/json.c), built on its own.
mpb_unit_test(test_json test_json.c ${PROJECT_SOURCE_DIR}/client/cli/json.c
  LIBS mpb_static mpbcommon PkgConfig::JANSSON)
target_include_directories(test_json PRIVATE ${PROJECT_SOURCE_DIR}/client/cli)
