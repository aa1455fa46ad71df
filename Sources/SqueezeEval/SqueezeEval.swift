// SqueezeEval
