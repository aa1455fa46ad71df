// SqueezeTokenizer
