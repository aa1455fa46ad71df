// SqueezeKernels
