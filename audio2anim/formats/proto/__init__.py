"""The gRPC protocol of ``audio2anim serve``: ``audio2anim.proto`` and the modules protoc makes
of it (``audio2anim_pb2``, ``audio2anim_pb2_grpc``; the command that regenerates them is in the
.proto). `ACCEPTED` is the initial metadata the server sends when it takes a call (the token
is right and a session slot is free): a client that waits for it before writing learns a
refusal's status instead of a failed write."""

ACCEPTED = ("audio2anim-accepted", "1")
