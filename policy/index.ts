// The kiloclaw-rollout policy pack. Constructing the pack starts the gRPC server
// the Pulumi CLI talks to, so this file does nothing else: the policies live in
// ./policies, where tests import them without starting a server.
import { PolicyPack } from "@pulumi/policy";
import { PACK_ENFORCEMENT_LEVEL, POLICY_PACK_NAME, policies } from "./policies";

new PolicyPack(POLICY_PACK_NAME, { policies, enforcementLevel: PACK_ENFORCEMENT_LEVEL });
