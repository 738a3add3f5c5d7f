// The integration harness for tests that need server + runner (and the e2e fixtures): one start, one dispose.
export { startControlPlane } from './control-plane.js';
export type { ControlPlane, ControlPlaneOptions, TestUser } from './control-plane.js';
export { startFixtures } from './fixtures.js';
export type { Fixtures } from './fixtures.js';
export { startHarness } from './harness.js';
export type { Harness, HarnessOptions, HarnessWithFixtures } from './harness.js';
export { deleteEnvironment, waitFor, waitForPhase } from './wait.js';
export type { WaitOptions } from './wait.js';
export { freePort } from '../fixtures/process.js';
