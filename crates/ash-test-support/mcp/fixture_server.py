"""An MCP server on the official Python SDK (`mcp`, v2) for ash's connection tests.

Modes (first argument):
  stdio                 the server on stdin/stdout
  http PORT [TOKEN]     streamable HTTP on 127.0.0.1:PORT at /mcp; with TOKEN, every request
                        must carry `Authorization: Bearer TOKEN` (else 401 + WWW-Authenticate)
  many N                stdio, offering N more tools `tool_0` … (the registry benchmark)
  silent                reads stdin and never answers (a server that hangs at initialize)
  garbage               answers every line with text that is not JSON-RPC
"""

import asyncio
import os
import sys

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.utilities.types import Image

# A 1x1 transparent PNG.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)

server = MCPServer(
    "fixture",
    instructions="Fixture server: call add to add numbers.",
    version="1.0.0",
)


@server.tool(description="Add two integers.")
def add(a: int, b: int) -> int:
    return a + b


@server.tool(description="Work for a while, reporting progress every tenth of a second.")
async def slow(steps: int, ctx: Context) -> str:
    for i in range(steps):
        await ctx.report_progress(i + 1, steps, f"step {i + 1} of {steps}")
        await asyncio.sleep(0.1)
    return f"done after {steps} steps"


@server.tool(description="Never answers.")
async def hang() -> str:
    await asyncio.sleep(3600)
    return "unreachable"


@server.tool(description="Dies in the middle of the call.")
async def crash() -> str:
    await asyncio.sleep(0.2)
    os._exit(3)


@server.tool(description="Returns `kb` kilobytes of text.")
def huge(kb: int) -> str:
    return "x" * (kb * 1024)


@server.tool(description="Returns a tiny PNG.")
def image() -> Image:
    return Image(data=PNG, format="png")


@server.tool(description="Always fails.")
def fail() -> str:
    raise ToolError("the fixture fails on purpose")


@server.tool(description="Says what FIXTURE_SETTING is set to in the server's environment.")
def setting() -> str:
    return os.environ.get("FIXTURE_SETTING", "(unset)")


@server.tool(description="Adds the tool `late` and tells the client the tool list changed.")
async def grow(ctx: Context) -> str:
    def late() -> str:
        return "late tool answered"

    if "late" not in [t.name for t in await server.list_tools()]:
        server.add_tool(late, name="late", description="Appears after grow is called.")
    # Sessions of 2025 protocol versions hear it as notifications/tools/list_changed.
    await ctx.session.send_tool_list_changed()
    return "grown"


def bearer(app, token):
    async def guarded(scope, receive, send):
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or [])
            if headers.get(b"authorization") != f"Bearer {token}".encode():
                await send({
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")],
                })
                await send({"type": "http.response.body", "body": b'{"error":"unauthorized"}'})
                return
        await app(scope, receive, send)

    return guarded


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "stdio"
    if mode == "stdio":
        server.run("stdio")
    elif mode == "many":
        def make(i):
            def tool(city: str, days: int = 1, units: str = "metric") -> str:
                return f"{i}: {city} {days} {units}"

            return tool

        for i in range(int(sys.argv[2])):
            server.add_tool(make(i), name=f"tool_{i}", description=f"Generated tool number {i}.")
        server.run("stdio")
    elif mode == "http":
        import uvicorn

        port = int(sys.argv[2])
        app = server.streamable_http_app(host="127.0.0.1")
        if len(sys.argv) > 3:
            app = bearer(app, sys.argv[3])
        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
    elif mode == "silent":
        for _ in sys.stdin:
            pass
    elif mode == "garbage":
        for _ in sys.stdin:
            print("this is not JSON-RPC", flush=True)
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
