"""The one path normaliser, shared by the web tier, the workers and the simulator (pure, no imports).

Device Management writes resource paths as '/3/0/1'; senders and users also write '3/0/1', '/3/0/1/'
or '//3/0/1'. Every module that compares, stores or routes paths passes them through `normalize_path`
first, so they all agree on one spelling: exactly one leading '/', no trailing '/'.
"""


def normalize_path(path: str) -> str:
    """'3/0/1', '/3/0/1/', '//3/0/1' -> '/3/0/1'; '' and '/' -> '/'. Patterns ('/3/*/5700') alike."""
    if path[:1] == "/" and path[1:2] != "/" and path[-1:] != "/":
        return path
    return "/" + path.strip("/")
