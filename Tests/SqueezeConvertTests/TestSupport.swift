import Foundation
@_exported import SqueezeTestSupport

/// This target's fixture files (`Fixtures/` in its bundle).
let Fixtures = FixtureFiles(bundle: .module)
