"""One JSON-RPC request once it was admitted: the rate limit, the scopes, the SDK's protocol kernel, the tool
and what it came to; asking the person mid-call; fair admission to a server's own bounded resources."""
