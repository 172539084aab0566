// The TypeScript SDK client, declaring URL-mode elicitation, calls a tool that needs the person to visit a URL
// first: the SDK surfaces the server's -32042 as its UrlElicitationRequiredError, with the elicitation.
//   node ts_url_elicitation.mjs URL TOKEN
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const [url, token] = process.argv.slice(2);
const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { Authorization: `Bearer ${token}` } },
});
const client = new Client({ name: 'mcpfleet-interop-url', version: '1.0.0' },
  { capabilities: { elicitation: { form: {}, url: {} } } });
await client.connect(transport);
const report = {};
try {
  await client.callTool({ name: 'whoami', arguments: {} });
  report.error = null;
} catch (error) {
  report.error = error.constructor.name;
  report.elicitations = error.elicitations ?? error.data?.elicitations;
}
await client.close();
console.log(JSON.stringify(report));
