// Drives the GitHub server with the TypeScript MCP SDK's own client: its tool annotations, a labelled read,
// and the write that follows an untrusted read (refused; an id passed back confirms nothing).
//   node ts_github_client.mjs <mcp url> <token>
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [url, token] = process.argv.slice(2);
const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { Authorization: `Bearer ${token}` } },
});
const client = new Client({ name: "mcpfleet-interop-github", version: "1.0.0" });
await client.connect(transport);
const repo = { owner: "octo", repo: "hello" };
const report = {
  tools: Object.fromEntries((await client.listTools()).tools.map((tool) => [tool.name, tool.annotations])),
};
report.read = await client.callTool({ name: "search_issues", arguments: { ...repo, query: "crash" } });
report.refused = await client.callTool({ name: "create_issue", arguments: { ...repo, title: "From TypeScript" } });
report.confirmed = await client.callTool({
  name: "create_issue",
  arguments: { ...repo, title: "From TypeScript", confirm: "0".repeat(32) },
});
await client.close();
console.log(JSON.stringify(report));
