"""An MCP client on the official Python SDK (`mcp`, v2): the independent client that checks
ash's MCP server side. Prints one JSON document on stdout describing what it saw.

Usage:
  client.py stdio SPEC_JSON          SPEC_JSON: {"command": [...], "env": {...}, "cwd": "..."}
  client.py http URL [AUTHORIZATION]  streamable HTTP, sending that `Authorization` header
Then, on stdin, one JSON list of calls: [{"message": "...", "continue": true|false}, ...];
a call with "continue" passes the previous answer's continuationToken.
"""

import asyncio
import json
import sys

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client


async def session_calls(session, calls):
    init = await session.initialize()
    tools = await session.list_tools()
    out = {
        "server": init.server_info.name,
        "instructions": init.instructions,
        "tools": [
            {"name": t.name, "description": t.description, "inputSchema": t.input_schema,
             "outputSchema": t.output_schema}
            for t in tools.tools
        ],
        "answers": [],
    }
    token = None
    tool = tools.tools[0].name
    for call in calls:
        progress = []

        async def on_progress(value, total, message):
            progress.append(message)

        if "raw" in call:
            arguments = call["raw"]
        else:
            arguments = {"message": call["message"]}
            if call.get("continue") and token:
                arguments["continuationToken"] = token
        try:
            result = await session.call_tool(tool, arguments, progress_callback=on_progress)
        except Exception as error:  # a JSON-RPC error, reported as such
            out["answers"].append({"error": str(error)})
            continue
        structured = result.structured_content or {}
        token = structured.get("continuationToken") or token
        out["answers"].append({
            "isError": bool(result.is_error),
            "text": [c.text for c in result.content if getattr(c, "type", "") == "text"],
            "structured": structured,
            "progress": progress,
        })
    return out


async def main():
    mode = sys.argv[1]
    calls = json.loads(sys.stdin.read() or "[]")
    if mode == "stdio":
        spec = json.loads(sys.argv[2])
        params = StdioServerParameters(
            command=spec["command"][0], args=spec["command"][1:], env=spec.get("env"), cwd=spec.get("cwd")
        )
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:
                out = await session_calls(session, calls)
    else:
        import httpx2

        headers = {"Authorization": sys.argv[3]} if len(sys.argv) > 3 else {}
        async with httpx2.AsyncClient(headers=headers, timeout=60) as http:
            async with streamable_http_client(sys.argv[2], http_client=http) as streams:
                read, write = streams[0], streams[1]
                async with ClientSession(read, write) as session:
                    out = await session_calls(session, calls)
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
