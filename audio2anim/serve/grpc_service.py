"""``audio2anim serve`` over gRPC: the ``audio2anim.v1.AnimationService`` of
``audio2anim/formats/proto/audio2anim.proto``, one bidirectional stream per session.

A thin transport over `audio2anim.serve.session`: the first request's ``start`` becomes the
`StartMessage` (validated with the WebSocket's one-line errors), ``audio`` requests are the
chunks and ``end`` (or closing the request stream) the end of the audio; the session's
messages go back as ``StreamResponse``s, field for field. grpc.aio runs in the event loop of
the WebSocket server, so both transports share the sessions, slots and metrics of one
`audio2anim.serve.server.Server`.

Statuses: a missing or wrong token (metadata ``authorization: Bearer TOKEN`` or ``x-token:
TOKEN``) is UNAUTHENTICATED and a full server RESOURCE_EXHAUSTED, the status alone; a call
that passes both gets the initial metadata `ACCEPTED` at once. After that, a bad start
message or chunk is INVALID_ARGUMENT and a graph that fails mid-stream INTERNAL, each after
one ``error`` response with the same line. A client that cancels its call (or goes away:
keepalive pings every 20 s) ends its session as ``disconnected``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import grpc

from audio2anim.formats.proto import ACCEPTED
from audio2anim.formats.proto import audio2anim_pb2 as pb
from audio2anim.formats.proto import audio2anim_pb2_grpc as pb_grpc
from audio2anim.graph.netguard import exposure_warning, token_ok

from .session import START_TIMEOUT_S, ServerFull, SessionError, start_message

KEEPALIVE_MS = 20_000  # a ping every 20 s on an idle connection…
KEEPALIVE_TIMEOUT_MS = 10_000  # …unanswered for 10 s: the client is gone


def request_token(metadata) -> str | None:
    """The token a call's metadata carries (``authorization: Bearer T`` or ``x-token: T``)."""
    for key, value in metadata or ():
        if key == "authorization" and value[:7].lower() == "bearer ":
            return value[7:].strip()
        if key == "x-token":
            return value
    return None


def response(message: dict) -> pb.StreamResponse:
    """A session's message (the WebSocket protocol's JSON object) → ``StreamResponse``."""
    kind = message.get("type")
    if kind is None:
        return pb.StreamResponse(frame=pb.StreamResponse.Frame(**message))
    fields = {k: v for k, v in message.items() if k != "type"}
    if kind == "header":
        return pb.StreamResponse(header=pb.StreamResponse.Header(**fields))
    if kind == "end":
        return pb.StreamResponse(end=pb.StreamResponse.End(**fields))
    return pb.StreamResponse(error=pb.StreamResponse.Error(message=message["error"]))


async def _start(requests) -> dict:
    """The first request's start message as the dict `start_message` validates."""
    try:
        first = await asyncio.wait_for(anext(requests), START_TIMEOUT_S)
    except TimeoutError:
        raise SessionError(f"no start message within {START_TIMEOUT_S:g} s") from None
    except StopAsyncIteration:
        raise SessionError("the request stream ended before its start message") from None
    if first.WhichOneof("kind") != "start":
        raise SessionError(
            "the first request must be the start message, e.g. "
            '{"start": {"rate": 16000, "format": "s16le"}}'
        )
    s = first.start
    return {"rate": s.rate, "format": s.format, **({"graph": s.graph} if s.graph else {})}


async def _chunks(requests) -> AsyncIterator[bytes | None]:
    """The audio of a call's requests for `Session.run`; None at ``end`` or the half-close."""
    async for r in requests:
        kind = r.WhichOneof("kind")
        if kind == "audio":
            yield r.audio
        elif kind == "end":
            break
        else:
            raise SessionError("after start, send audio chunks then end")
    yield None


class AnimationService(pb_grpc.AnimationServiceServicer):
    """The servicer: each ``Stream`` call is one session of ``server``."""

    def __init__(self, server) -> None:
        self.server = server

    async def Stream(self, requests, context):  # noqa: N802 (the proto's name)
        server = self.server
        if not token_ok(request_token(context.invocation_metadata()), server.token):
            server.refuse("token")
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong token")

        async def send(message: dict) -> None:
            r = response(message)
            try:
                await context.write(r)
            except (asyncio.CancelledError, ConnectionError):
                raise
            except Exception as e:  # the call has ended under us (grpc's own error types)
                raise ConnectionError(f"gRPC write failed: {e}") from None

        code = message = None
        try:
            with server.slot():
                await context.send_initial_metadata((ACCEPTED,))
                start = start_message(await _start(requests))
                async with server.open_session(start) as session:
                    await session.run(_chunks(requests), send)
        except ServerFull as e:  # before the call is taken: its status alone
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(e))
        except SessionError as e:  # before the header: nothing sent yet
            code, message = grpc.StatusCode.INVALID_ARGUMENT, str(e)
        if code is not None:
            with contextlib.suppress(ConnectionError):
                await send({"type": "error", "error": message})
        elif session.error is not None:  # the error message went with the session's frames
            code = grpc.StatusCode.INVALID_ARGUMENT
            if session.fault != "client":
                code = grpc.StatusCode.INTERNAL
            message = session.error
        if code is not None:
            await context.abort(code, message)


async def listen_grpc(server, host: str, port: int, reuse_port: bool = False):
    """Serve ``server``'s sessions over gRPC on ``host:port`` (0: any free port) → (the
    ``grpc.aio.Server``, the port, `exposure_warning` or None); ``reuse_port``: SO_REUSEPORT,
    the port shared with other processes. A port that cannot be bound is one OSError line."""
    who = "audio2anim serve (gRPC)"
    g = grpc.aio.server(
        options=[
            # room for a chunk over ``max_chunk``, so that its error is ours (as WebSocket)
            ("grpc.max_receive_message_length", 2 * server.max_chunk + 65536),
            ("grpc.keepalive_time_ms", KEEPALIVE_MS),
            ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
            # a port in use is an error, not a shared port, unless shared on purpose
            ("grpc.so_reuseport", int(reuse_port)),
        ]
    )
    pb_grpc.add_AnimationServiceServicer_to_server(AnimationService(server), g)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        # first ourselves: gRPC's own failure also logs a multi-line report
        if port and not reuse_port:
            family, kind, proto, _, where = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(where)
        bound = g.add_insecure_port(address)
    except (OSError, RuntimeError) as e:
        raise OSError(f"{who}: cannot listen on {address}: {e}") from None
    await g.start()
    return g, bound, exposure_warning(who, host, bound)
