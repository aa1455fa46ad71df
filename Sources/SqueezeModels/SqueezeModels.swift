// SqueezeModels
