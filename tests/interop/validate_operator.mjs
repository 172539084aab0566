// Validates Prometheus Operator objects (a JSON array on stdin) with @kubernetes-models/prometheus-operator, whose
// JSON-schema validators are generated from the operator's API types at a pinned release. Prints one line per
// object ("ok KIND NAME" or "invalid KIND NAME: errors") and exits 1 when any is invalid.
import { readFileSync } from "node:fs";
import { PrometheusRule } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule";
import { PodMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";
import { AlertmanagerConfig } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1alpha1/AlertmanagerConfig";

const models = { PrometheusRule, PodMonitor, ServiceMonitor, AlertmanagerConfig };
let invalid = 0;
for (const manifest of JSON.parse(readFileSync(0, "utf8"))) {
  const Model = models[manifest.kind];
  const name = `${manifest.kind} ${manifest.metadata?.namespace}/${manifest.metadata?.name}`;
  if (!Model) {
    console.log(`invalid ${name}: no model for this kind`);
    invalid += 1;
    continue;
  }
  try {
    new Model(manifest).validate();
    console.log(`ok ${name}`);
  } catch (error) {
    console.log(`invalid ${name}: ${error.message.replace(/\n/g, "; ")}`);
    invalid += 1;
  }
}
process.exit(invalid ? 1 : 0);
