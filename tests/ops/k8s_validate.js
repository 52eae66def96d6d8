// k8s_validate.js - validates Kubernetes objects against the API's OpenAPI schemas with the npm
// package kubernetes-models (enums, formats such as quantities, required fields, types), for
// check_k8s.py. Reads JSON on stdin: {"cases": {"NAME": [object, ...], ...}}; writes JSON on
// stdout: {"NAME": [{"kind", "name", "errors": [text, ...]}, ...], ...}. An object of a kind
// this script has no model for is an error too, never a silent pass.
//
//   NODE_PATH=CACHE/node_modules node k8s_validate.js < in.json
'use strict';
const fs = require('fs');

const models = {
  'v1/Service': () => require('kubernetes-models/v1/Service').Service,
  'v1/Secret': () => require('kubernetes-models/v1/Secret').Secret,
  'v1/ConfigMap': () => require('kubernetes-models/v1/ConfigMap').ConfigMap,
  'apps/v1/StatefulSet': () => require('kubernetes-models/apps/v1/StatefulSet').StatefulSet,
  'apps/v1/Deployment': () => require('kubernetes-models/apps/v1/Deployment').Deployment,
  'networking.k8s.io/v1/NetworkPolicy': () =>
    require('kubernetes-models/networking.k8s.io/v1/NetworkPolicy').NetworkPolicy,
  'policy/v1/PodDisruptionBudget': () =>
    require('kubernetes-models/policy/v1/PodDisruptionBudget').PodDisruptionBudget,
};

function validate(obj) {
  const key = `${obj.apiVersion}/${obj.kind}`;
  const make = models[key];
  if (!make) return [`no model for apiVersion/kind ${key}`];
  try {
    new (make())(obj).validate();
    return [];
  } catch (e) {
    // ajv's messages: "data/spec/.../imagePullPolicy must be equal to one of the allowed values, ..."
    return String(e.message).split(/, (?=data[/ ])/);
  }
}

const input = JSON.parse(fs.readFileSync(0, 'utf8'));
const out = {};
for (const [name, objs] of Object.entries(input.cases)) {
  out[name] = objs.map((o) => ({
    kind: o && o.kind,
    name: o && o.metadata && o.metadata.name,
    errors: validate(o),
  }));
}
process.stdout.write(JSON.stringify(out));
