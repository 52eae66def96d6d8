# persist.cmake - the broker's state on disk (issue 12): crash loops under SIGKILL with
# --fsync always and everysec, every kind restored, torn and damaged logs, snapshots under
# load (included by CMakeLists.txt in this folder). MPB_CRASH_KILLS / MPB_CRASH_GAP_MS make
# the crash loops longer by hand.
mpb_integration_test(test_persist test_persist.c TIMEOUT 600)
