// Drives an mcpfleet server with the TypeScript MCP SDK's own client (a client we did not write).
//   node ts_client.mjs <mcp url> <token>
// Prints one JSON object: what the server advertised, a successful call, a call it refused.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [url, token] = process.argv.slice(2);
const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { Authorization: `Bearer ${token}` } },
});
const client = new Client({ name: "mcpfleet-interop", version: "1.0.0" });
await client.connect(transport);
const report = {
  protocolVersion: transport.protocolVersion ?? null,
  server: client.getServerVersion(),
  capabilities: client.getServerCapabilities(),
  tools: (await client.listTools()).tools.map((tool) => ({ name: tool.name, annotations: tool.annotations, meta: tool._meta })),
};
report.echo = await client.callTool({ name: "echo", arguments: { text: "from typescript", times: 2 } });
report.invalid = await client.callTool({ name: "echo", arguments: { text: "x", times: 99 } });
try {
  await client.callTool({ name: "write", arguments: { key: "abc" } });
  report.forbidden = "not refused";
} catch (error) {
  report.forbidden = { code: error.code ?? null, message: String(error.message) };
}
await client.close();
console.log(JSON.stringify(report));
