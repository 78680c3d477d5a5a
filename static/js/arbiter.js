// Arbiter's page behaviour. No inline script is allowed by our Content-Security-Policy,
// so everything interactive lives in this file.
"use strict";
