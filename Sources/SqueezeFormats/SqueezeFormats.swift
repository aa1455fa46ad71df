// SqueezeFormats
