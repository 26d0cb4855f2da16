// The stack: read the `kiloclaw` config once and declare the rollout. Its stack outputs are what a developer
// checks by hand (RolloutOutputs); outputs a mode does not have (the validation report of a prebuilt image)
// are left out rather than exported as undefined, which Pulumi would warn about on every run.
import { loadRolloutConfig } from "./lib/config";
import { rollout } from "./rollout";

const outputs = rollout(loadRolloutConfig());

export = Object.fromEntries(Object.entries(outputs).filter(([, value]) => value !== undefined));
