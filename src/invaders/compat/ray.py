"""Ray 2.60: the private APIs the sweep driver's cluster check relies on, each here and only here.

- The head's gRPC method `ray.rpc.NodeInfoGcsService/GetClusterId`: the first call every driver and node
  makes to a cluster (to its GCS). A cluster started with `RAY_AUTH_MODE=token` answers it UNAUTHENTICATED
  unless the call carries the cluster's token; an open cluster answers anyone. Called raw, with grpcio (the
  library Ray's own clients use, without an HTTP proxy as Ray's are unless `RAY_grpc_enable_http_proxy`),
  it tells the two apart in milliseconds and starts nothing on the cluster: no driver, no job, no task.
- `ray._raylet.AuthenticationTokenLoader` and `get_authentication_mode`: the token this process's Ray
  would send, found as Ray finds it (only with `RAY_AUTH_MODE=token`, which an explicit address needs and
  `address="auto"` turns on when a token exists: `RAY_AUTH_TOKEN`, else the file `RAY_AUTH_TOKEN_PATH`
  names, else `~/.ray/auth_token`), attached as Ray's Python gRPC clients attach it. The token stays in
  this module: nothing here prints, logs or returns it.
- `ray._private.services.canonicalize_bootstrap_address`: the cluster `address="auto"` means.

Importing this module imports neither Ray nor grpc; `gcs_call` imports only grpc.
"""

from __future__ import annotations

import os

from invaders.compat import require

require("ray", "2.60", "2.61")

GET_CLUSTER_ID = "/ray.rpc.NodeInfoGcsService/GetClusterId"  # request GetClusterIdRequest: no fields


class ClusterUnusable(Exception):
    """The address does not answer as a Ray cluster's head, or this process's Ray has no usable token;
    the message is one line (a part of one) that names no token."""


def gcs_call(address: str, timeout: float, metadata: tuple[tuple[str, str], ...] = ()) -> bool:
    """Call the head's GetClusterId with `metadata` (none: no token at all). True if it answered, False
    if it refused the call as unauthenticated; ClusterUnusable if it did not answer within `timeout`
    seconds or is not a Ray head."""
    import grpc

    proxy = os.environ.get("RAY_grpc_enable_http_proxy", "0").lower() in ("1", "true")
    with grpc.insecure_channel(address, options=[("grpc.enable_http_proxy", int(proxy))]) as channel:
        call = channel.unary_unary(GET_CLUSTER_ID, request_serializer=bytes, response_deserializer=bytes)
        try:
            call(b"", timeout=timeout, metadata=metadata)  # the empty request; its reply is not needed
            return True
        except grpc.RpcError as exc:
            code, details = exc.code(), (exc.details() or "").splitlines()[0:1]
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return False
    detail = f"{code.name}: {details[0][:150]}" if details else code.name
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        raise ClusterUnusable(f"no answer from a Ray cluster's head there within {timeout:g} s")
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNIMPLEMENTED):
        raise ClusterUnusable(f"what answers there is not a Ray cluster's head ({detail})")
    raise ClusterUnusable(f"the head answered a Ray client with an error ({detail})")


def _token_auth() -> bool:
    from ray._raylet import AuthenticationMode, get_authentication_mode

    return get_authentication_mode() == AuthenticationMode.TOKEN


def token_source() -> str:
    """Where this process's Ray takes its token from, in Ray's order (whether or not the token exists)."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return "RAY_AUTH_TOKEN"
    if os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return f"RAY_AUTH_TOKEN_PATH={os.environ['RAY_AUTH_TOKEN_PATH']}"
    return "~/.ray/auth_token"


def driver_token(auto: bool) -> tuple[str, tuple[tuple[str, str], ...]]:
    """This process's Ray driver's token, as `(state, gRPC metadata)`: state "sent" (the metadata carries
    it), "off" (a token exists but RAY_AUTH_MODE is not `token`, so an explicit address gets none) or
    "none" (no token and no token mode). With token mode and no token to be found, ClusterUnusable with
    Ray's words for what is missing. `auto`: the address is "auto", for which Ray turns token mode on
    itself when RAY_AUTH_MODE is unset and a token exists."""
    from ray._raylet import AuthenticationTokenLoader
    from ray.exceptions import AuthenticationError

    loader = AuthenticationTokenLoader.instance()
    try:
        if _token_auth():
            if not loader.has_token():
                raise ClusterUnusable("this driver's token is not usable (RAY_AUTH_MODE=token, but Ray finds none)")
        elif not loader.has_token(ignore_auth_mode=True):
            return "none", ()
        elif not (auto and os.environ.get("RAY_AUTH_MODE") is None):
            return "off", ()
        return "sent", tuple(loader.get_token_for_http_header().items())
    except AuthenticationError as exc:  # token mode, and the token Ray was told of is not there
        raise ClusterUnusable(f"this driver's token is not usable (Ray: {str(exc).split('. ')[0]})") from None


def local_cluster() -> str | None:
    """The HOST:PORT `address="auto"` connects to (RAY_ADDRESS, else the cluster `ray start` last started
    on this machine, else any running here), or None if there is none."""
    from ray._private.services import canonicalize_bootstrap_address

    try:
        return canonicalize_bootstrap_address("auto")
    except ConnectionError:
        return None


def local_instance_auth() -> str:
    """The authentication of the Ray instance `ray.init()` with no address starts: `token` by default
    from Ray 2.59 (it makes ~/.ray/auth_token if there is none), unless RAY_AUTH_MODE says otherwise."""
    mode = os.environ.get("RAY_AUTH_MODE")
    return "token" if mode is None or mode.lower() == "token" else "none"
