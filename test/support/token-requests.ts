/** Requests to an in-process Glimpse in keystone mode, made with a user's Keystone token. */
import assert from 'node:assert/strict';
import type { LightMyRequestResponse } from 'fastify';

import { json, type TestApp } from './app.js';
import type { KeystoneToken } from './keystone.js';

type Image = Record<string, unknown> & { id: string; status: string };

/** A request as token's user: a Buffer payload goes as image data, an object as JSON. */
export function sendAs(
  t: TestApp,
  token: KeystoneToken,
  method: 'GET' | 'POST' | 'PUT',
  url: string,
  payload?: Buffer | object,
): Promise<LightMyRequestResponse> {
  const data = Buffer.isBuffer(payload);
  const headers: Record<string, string> = {
    'x-auth-token': token.token,
    accept: 'application/json',
  };
  if (payload) headers['content-type'] = data ? 'application/octet-stream' : 'application/json';
  const body = data || payload === undefined ? payload : JSON.stringify(payload);
  return t.request({ method, url, headers, payload: body });
}

/** The response, once it is seen to have the status expected. */
export async function expectStatus(
  response: Promise<LightMyRequestResponse>,
  status: number,
): Promise<LightMyRequestResponse> {
  const answer = await response;
  assert.equal(answer.statusCode, status, answer.body);
  return answer;
}

export const RAW_BARE = { disk_format: 'raw', container_format: 'bare' };

/** A new raw/bare image without data, in token's project; its id. */
export async function newRawImage(t: TestApp, token: KeystoneToken): Promise<string> {
  const response = await expectStatus(sendAs(t, token, 'POST', '/v2/images', RAW_BARE), 201);
  return json<Image>(response).id;
}
