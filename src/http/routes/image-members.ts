import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

import { InvalidInputError } from '../../domain/errors.js';
import { isPlainObject } from '../../domain/image-input.js';
import type { MemberRecord } from '../../db/repository.js';
import type { MemberService } from '../../services/members.js';
import { isoSeconds } from '../image-view.js';
import { parseJsonBody } from '../json-body.js';
import { refuseBody, resource } from '../resource.js';

type ImageParams = { Params: { id: string } };
type MemberParams = { Params: { id: string; member: string } };

const MAX_MEMBER_ID_LENGTH = 255;

function memberView(member: MemberRecord) {
  return {
    member_id: member.member_id,
    image_id: member.image_id,
    status: member.status,
    created_at: isoSeconds(member.created_at),
    updated_at: isoSeconds(member.updated_at),
    schema: '/v2/schemas/member',
  };
}

/** The member collection and member resources of an image. */
export function imageMemberRoutes(members: MemberService) {
  const add = async (request: FastifyRequest<ImageParams>) => {
    const memberId = memberIdOf(parseJsonBody(request.body));
    return memberView(await members.add(request.glimpse, request.params.id, memberId));
  };

  const list = async (request: FastifyRequest<ImageParams>) => {
    refuseBody(request);
    const found = await members.list(request.glimpse, request.params.id);
    return { members: found.map(memberView), schema: '/v2/schemas/members' };
  };

  const show = async (request: FastifyRequest<MemberParams>) => {
    refuseBody(request);
    const { id, member } = request.params;
    return memberView(await members.show(request.glimpse, id, member));
  };

  const update = async (request: FastifyRequest<MemberParams>) => {
    const status = statusOf(parseJsonBody(request.body));
    const { id, member } = request.params;
    return memberView(await members.setStatus(request.glimpse, id, member, status));
  };

  const remove = async (request: FastifyRequest<MemberParams>, reply: FastifyReply) => {
    refuseBody(request);
    await members.remove(request.glimpse, request.params.id, request.params.member);
    return reply.code(204).send();
  };

  return async (app: FastifyInstance): Promise<void> => {
    resource(app, '/v2/images/:id/members', { POST: add, GET: list });
    resource(app, '/v2/images/:id/members/:member', {
      GET: show,
      PUT: update,
      DELETE: remove,
    });
  };
}

function memberIdOf(body: unknown): string {
  if (!isPlainObject(body)) {
    throw new InvalidInputError('Expected a member in the form: {"member": "image_id"}');
  }
  if (!('member' in body)) throw new InvalidInputError('Member to be added not specified');
  const member = body.member;
  if (!member) throw new InvalidInputError("Member can't be empty");
  if (typeof member !== 'string' || member.length > MAX_MEMBER_ID_LENGTH) {
    throw new InvalidInputError(
      `Member must be a string of at most ${MAX_MEMBER_ID_LENGTH} characters`,
    );
  }
  return member;
}

function statusOf(body: unknown): unknown {
  if (!isPlainObject(body)) {
    throw new InvalidInputError('Expected a status in the form: {"status": "status"}');
  }
  if (!('status' in body)) throw new InvalidInputError('Status not specified');
  return body.status;
}
