/**
 * Member and task schemas. Upstream serves both in their minimal form (name and properties
 * only) and their collections with a single `describedby` link.
 */
import { UUID_PATTERN } from './image.js';

type JsonSchema = Record<string, unknown>;

const MEMBER_PROPERTIES = {
  member_id: { type: 'string', description: 'Project the image is shared with' },
  image_id: { type: 'string', description: 'Shared image', pattern: UUID_PATTERN },
  created_at: { type: 'string', description: 'When the membership was created' },
  updated_at: { type: 'string', description: 'When the membership last changed' },
  status: {
    type: 'string',
    description: 'Whether the member accepted the image',
    enum: ['pending', 'accepted', 'rejected'],
  },
  schema: { readOnly: true, type: 'string' },
};

const TASK_PROPERTIES: Record<string, JsonSchema> = {
  id: { description: 'Identifier of the task', pattern: UUID_PATTERN, type: 'string' },
  type: {
    description: 'Kind of task',
    enum: ['import', 'api_image_import', 'location_import'],
    type: 'string',
  },
  status: {
    description: 'Progress of the task',
    enum: ['pending', 'processing', 'success', 'failure'],
    type: 'string',
  },
  input: { description: 'Parameters of the task', type: ['null', 'object'] },
  result: { description: 'Outcome of the task', type: ['null', 'object'] },
  owner: { description: 'Project owning the task', type: 'string' },
  message: { description: 'Explanation of the outcome, mostly on failure', type: 'string' },
  image_id: { description: 'Image the task works on', type: 'string' },
  request_id: { description: 'Request that created the task', type: 'string' },
  user_id: { description: 'User that created the task', type: 'string' },
  expires_at: { description: 'When the finished task will be removed', type: ['null', 'string'] },
  created_at: { description: 'When the task was created', type: 'string' },
  updated_at: { description: 'When the task last changed', type: 'string' },
  self: { readOnly: true, type: 'string' },
  schema: { readOnly: true, type: 'string' },
};

function collection(name: string, item: JsonSchema): JsonSchema {
  return {
    name,
    properties: {
      [name]: { type: 'array', items: item },
      schema: { type: 'string' },
    },
    links: [{ rel: 'describedby', href: '{schema}' }],
  };
}

export function memberSchema(): JsonSchema {
  return { name: 'member', properties: MEMBER_PROPERTIES };
}

export function membersSchema(): JsonSchema {
  return collection('members', memberSchema());
}

export function taskSchema(): JsonSchema {
  return { name: 'task', properties: TASK_PROPERTIES };
}

export function tasksSchema(): JsonSchema {
  const properties = { ...TASK_PROPERTIES };
  for (const hidden of ['input', 'result', 'message']) delete properties[hidden];
  return collection('tasks', { name: 'task', properties });
}
