# unix.cmake - unix:// endpoints (broker/stream.c, client/src/link.c): ops from several
# processes over a Unix stream socket, bad input on a raw one (frames over the bound for a peer
# without a session, partial frames left idle, bad magic answered, silent connections), a
# client that never reads past max-output, a broker killed and restarted under its clients
# (same descriptor, same session, a parked get completes), the starts refused and the stale
# socket replaced, and ZeroMQ peers posing as a unix:// connection. Included by
# CMakeLists.txt in this folder.
mpb_integration_test(test_unix test_unix.c TIMEOUT 300)
# test_mpb: mpb:// endpoints, the same frames on TCP sealed with keys made from the authkey
# (proto/seal.c): ops from several processes, a pool served over it, nothing readable on the
# wire, another key refused, bad input on raw sockets, a client built from PROTOCOL.md alone,
# partial frames bounded, silent peers closed, a restart under a client, the refused starts, a
# writer through a 3 s network cut exactly once.
mpb_integration_test(test_mpb test_mpb.c TIMEOUT 300)
