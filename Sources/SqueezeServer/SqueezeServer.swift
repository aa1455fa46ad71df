// SqueezeServer: OpenAI-compatible HTTP serving (see ServerCommand).
