"""Who issues the tokens, as code: the platform's own authorization server (`local`), or a provider it configures
(`keycloak`, `auth0`), each derived from the servers' declarations (`infra.authz.resources`)."""
