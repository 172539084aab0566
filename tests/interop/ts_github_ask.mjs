// The TypeScript MCP SDK's own client, with an elicitation handler standing in for the person: after an
// untrusted read, a write is confirmed by the person (the first one accepted, the second declined).
//   node ts_github_ask.mjs <mcp url> <token>
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { ElicitRequestSchema } from "@modelcontextprotocol/sdk/types.js";

const [url, token] = process.argv.slice(2);
const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { Authorization: `Bearer ${token}` } },
});
const client = new Client(
  { name: "mcpfleet-interop-ask", version: "1.0.0" },
  { capabilities: { elicitation: { form: {} } } },
);
const asked = [];
client.setRequestHandler(ElicitRequestSchema, async (request) => {
  asked.push(request.params);
  return asked.length === 1 ? { action: "accept", content: { confirm: true } } : { action: "decline" };
});
await client.connect(transport);
const repo = { owner: "octo", repo: "hello" };
const report = { session: transport.sessionId };
report.read = await client.callTool({ name: "search_issues", arguments: { ...repo, query: "crash" } });
report.accepted = await client.callTool({ name: "create_issue", arguments: { ...repo, title: "Confirmed by the person" } });
report.declined = await client.callTool({ name: "create_issue", arguments: { ...repo, title: "Declined by the person" } });
report.asked = asked;
await client.close();
console.log(JSON.stringify(report));
