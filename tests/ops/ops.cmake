# ops.cmake - tests of what operators touch: configuration (file < env < flags, --check-config),
# logs, the HTTP endpoint and its metrics, the deploy/ files (Kubernetes base, compose, systemd
# unit, Dockerfile) and the container image itself. Included by tests/CMakeLists.txt; every
# path is spelled from PROJECT_SOURCE_DIR so it does not matter where from.
#
#   ops_config      tests/ops/check_config.py   precedence, every bad value, the example conf
#   ops_logs        tests/ops/check_logs.py     one line per event, both formats, fields, no
#                   authkey; mpb-worker's lines too
#   ops_metrics     tests/ops/test_ops_metrics.c  /metrics against known workloads (objects,
#                   parked requests, a timeout, a real worker), promtool, probes
#   ops_k8s         tests/ops/check_k8s.py      the kustomize base, offline
#   ops_deploy      tests/ops/check_deploy.py   compose.yaml, the systemd unit, the Dockerfile
#   ops_container   tests/ops/container_test.sh build and run the image (label container; 77 =
#                   skipped, said loudly, when no container runtime can be had; with CI=true
#                   or MPB_REQUIRE_CONTAINER=1 that fails instead)
#   ops_compose     tests/ops/compose_test.sh   compose.yaml up with podman-compose, checked,
#                   down -v (label container; skipped or failed as ops_container)
set(MPB_OPS_DIR ${PROJECT_SOURCE_DIR}/tests/ops)
set(MPB_OPS_PYTHON /usr/bin/python3 CACHE FILEPATH "Python for the ops tests (Debian's, with python3-yaml and python3-kubernetes)")

# The image's health probe is the target mpb_healthcheck of tools/.

# promtool is found at run time ($MPB_PROMTOOL, PATH, or tests/ops/get_promtool.sh, which
# unpacks Debian's prometheus package into the test cache the first time: a 19 MB download).
add_executable(test_ops_metrics ${MPB_OPS_DIR}/test_ops_metrics.c)
target_include_directories(test_ops_metrics PRIVATE ${PROJECT_SOURCE_DIR}/tests/integration)
target_link_libraries(test_ops_metrics PRIVATE th mpbproto mpb_warnings)
target_compile_definitions(test_ops_metrics PRIVATE MPB_TEST_VERSION="${PROJECT_VERSION}"
  MPB_HEALTHCHECK_PATH="$<TARGET_FILE:mpb_healthcheck>"
  MPB_WORKER_PATH="$<TARGET_FILE:mpb_worker>" MPB_DEMO_LIB="$<TARGET_FILE:mpbdemo>"
  MPB_OPS_DIR="${MPB_OPS_DIR}")
add_dependencies(test_ops_metrics mpb_healthcheck mpb_worker mpbdemo mpb_cli)
add_test(NAME ops_metrics COMMAND test_ops_metrics)
set_tests_properties(ops_metrics PROPERTIES LABELS "ops;integration" TIMEOUT 240)

add_test(NAME ops_config
  COMMAND ${MPB_OPS_PYTHON} ${MPB_OPS_DIR}/check_config.py
          --mpbrokerd $<TARGET_FILE:mpbrokerd> --source ${PROJECT_SOURCE_DIR})
set_tests_properties(ops_config PROPERTIES LABELS ops TIMEOUT 120)

add_test(NAME ops_logs
  COMMAND ${MPB_OPS_PYTHON} ${MPB_OPS_DIR}/check_logs.py
          --mpbrokerd $<TARGET_FILE:mpbrokerd> --mpb $<TARGET_FILE:mpb_cli>
          --worker $<TARGET_FILE:mpb_worker> --demo-lib $<TARGET_FILE:mpbdemo>)
set_tests_properties(ops_logs PROPERTIES LABELS "ops;integration" TIMEOUT 90)

add_test(NAME ops_k8s
  COMMAND ${MPB_OPS_PYTHON} ${MPB_OPS_DIR}/check_k8s.py --source ${PROJECT_SOURCE_DIR})
set_tests_properties(ops_k8s PROPERTIES LABELS ops TIMEOUT 120)

add_test(NAME ops_deploy
  COMMAND ${MPB_OPS_PYTHON} ${MPB_OPS_DIR}/check_deploy.py --source ${PROJECT_SOURCE_DIR}
          --mpbrokerd $<TARGET_FILE:mpbrokerd>)
set_tests_properties(ops_deploy PROPERTIES LABELS ops TIMEOUT 120)

# Each script cuts its steps' timeouts to --budget, so that it ends, cleanup included, within
# its TIMEOUT. ops_compose runs the image ops_container keeps (the fixture orders them).
add_test(NAME ops_container
  COMMAND bash ${MPB_OPS_DIR}/container_test.sh --source ${PROJECT_SOURCE_DIR}
          --work ${PROJECT_BINARY_DIR}/ops-container --mpb $<TARGET_FILE:mpb_cli>
          --worker $<TARGET_FILE_DIR:mpb_cli>/mpb-worker
          --demo-lib ${PROJECT_BINARY_DIR}/examples/pool/libmpbdemo.so --budget 780)
set_tests_properties(ops_container PROPERTIES LABELS container TIMEOUT 900
  SKIP_RETURN_CODE 77 FIXTURES_SETUP mpb_image)

add_test(NAME ops_compose
  COMMAND bash ${MPB_OPS_DIR}/compose_test.sh --source ${PROJECT_SOURCE_DIR}
          --work ${PROJECT_BINARY_DIR}/ops-compose --mpb $<TARGET_FILE:mpb_cli> --budget 240)
set_tests_properties(ops_compose PROPERTIES LABELS container TIMEOUT 300
  SKIP_RETURN_CODE 77 FIXTURES_REQUIRED mpb_image)
