// SqueezeQuant
