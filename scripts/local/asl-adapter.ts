/**
 * Bridges the gaps between our ASL file and `aws-local-stepfunctions`, which
 * runs it locally. The definition stays the one in state-machines/; this
 * module only rewrites what the library cannot execute, and nothing else:
 *
 * 1. `${NameFunctionArn}` substitutions (which CDK fills on AWS) become local
 *    Lambda ARNs `arn:aws:lambda:local:000000000000:function:Name`, so each
 *    Task state maps to the handler of that name.
 * 2. A Distributed Map with an `ItemReader` (unsupported locally) becomes an
 *    inline Map fed by a Task state inserted just before it, named
 *    `<Map> [ItemReader]`, that reads the same S3 object with the same
 *    Parameters and puts the items at `$.__itemReader`. Every transition into
 *    the Map is redirected to that Task; the Task carries the Map's Catch so a
 *    read failure takes the same failure path as on AWS. One visible
 *    difference: the items stay in the local state after the Map (JSONPath
 *    cannot delete a key); on AWS they never enter it.
 *    With an `ItemBatcher` (also unsupported locally), the same Task batches
 *    the items as AWS does and the inline Map runs one item per batch, each
 *    `{ Items: [...], BatchInput }`: consecutive items, at most
 *    MaxItemsPerBatch of them and at most MaxInputBytesPerBatch bytes of that
 *    JSON (BatchInput included); the `*Path` variants and BatchInput's
 *    `.$` fields are read from the Map's input, as its Parameters are.
 * 3. `ToleratedFailurePercentage` (unsupported on an inline Map): 0 is the
 *    inline Map's own behaviour; 100 becomes a Catch of `States.ALL` on every
 *    Task of the item processor that ends the item in a Succeed state named
 *    `<Map> [tolerated failure]`. The Map then goes on past failed items, as
 *    on AWS, where they are failed child executions instead.
 * 4. `arn:aws:states:::states:startExecution` (an export continuing in a
 *    new execution) becomes a Task of the local function
 *    `LocalStartExecution`, which records the request; the runner starts that
 *    execution when this one has ended (see runExportLocally).
 */

export const LOCAL_ITEM_READER_FUNCTION = 'LocalItemReader';
/** Stands in for `arn:aws:states:::states:startExecution` (an export continuing in a new execution). */
export const LOCAL_START_EXECUTION_FUNCTION = 'LocalStartExecution';
const START_EXECUTION_RESOURCE = 'arn:aws:states:::states:startExecution';
const LOCAL_ARN_PREFIX = 'arn:aws:lambda:local:000000000000:function:';
const ITEMS_PATH = '$.__itemReader';

type Json = Record<string, unknown>;
export interface StateMachineDefinition {
  StartAt: string;
  States: Record<string, Json>;
  [key: string]: unknown;
}

export interface AdaptedDefinition {
  readonly definition: StateMachineDefinition;
  /** State name → local function name, for every Task state at any depth. */
  readonly taskFunctions: ReadonlyMap<string, string>;
}

export const localFunctionArn = (name: string) => `${LOCAL_ARN_PREFIX}${name}`;

export function adaptDefinitionForLocalRun(original: unknown): AdaptedDefinition {
  const substituted = JSON.parse(
    JSON.stringify(original).replace(/\$\{([A-Za-z0-9]+)FunctionArn\}/g, (_, name: string) =>
      localFunctionArn(name),
    ),
  ) as StateMachineDefinition;
  const unresolved = JSON.stringify(substituted).match(/\$\{[^}]+\}/);
  if (unresolved)
    throw new Error(`the definition has a substitution the local runner cannot fill: ${unresolved[0]}`);
  const taskFunctions = new Map<string, string>();
  const definition = adaptMachine(substituted, taskFunctions);
  return { definition, taskFunctions };
}

function adaptMachine(
  machine: StateMachineDefinition,
  taskFunctions: Map<string, string>,
): StateMachineDefinition {
  const states: Record<string, Json> = {};
  const redirects = new Map<string, string>();

  for (const [name, original] of Object.entries(machine.States)) {
    const state: Json = { ...original };
    if (state.Type === 'Task' && state.Resource === START_EXECUTION_RESOURCE) {
      // The runner records the request and starts that execution once this one has ended.
      state.Resource = localFunctionArn(LOCAL_START_EXECUTION_FUNCTION);
    }
    if (state.Type === 'Task') {
      const resource = String(state.Resource ?? '');
      if (!resource.startsWith(LOCAL_ARN_PREFIX)) {
        throw new Error(
          `Task state "${name}" calls ${resource}; the local runner only runs our Lambda handlers`,
        );
      }
      taskFunctions.set(name, resource.slice(LOCAL_ARN_PREFIX.length));
    }
    if (state.Type === 'Map') {
      const processor = (state.ItemProcessor ?? state.Iterator) as StateMachineDefinition | undefined;
      const tolerated = state.ToleratedFailurePercentage ?? 0;
      if (tolerated !== 0 && tolerated !== 100) {
        throw new Error(
          `Map state "${name}" tolerates ${String(tolerated)} % failures; the local runner bridges only 0 and 100`,
        );
      }
      if (processor) {
        const { ProcessorConfig: _config, ...rest } = processor as StateMachineDefinition & {
          ProcessorConfig?: unknown;
        };
        const adapted = adaptMachine(rest as StateMachineDefinition, taskFunctions);
        state.ItemProcessor =
          tolerated === 100 ? tolerateFailures(adapted, `${name} [tolerated failure]`) : adapted;
        delete state.Iterator;
      }
      delete state.ToleratedFailurePercentage;
      delete state.ToleratedFailurePercentagePath;
      delete state.ToleratedFailureCount;
      delete state.Label;
      const reader = state.ItemReader as Json | undefined;
      if (reader) {
        if (reader.Resource !== 'arn:aws:states:::s3:getObject') {
          throw new Error(
            `Map state "${name}" reads items with ${String(reader.Resource)}; only s3:getObject is bridged locally`,
          );
        }
        const readerName = `${name} [ItemReader]`;
        const batcher = state.ItemBatcher as Json | undefined;
        if (batcher && state.ItemSelector) {
          throw new Error(
            `Map state "${name}" has both ItemSelector and ItemBatcher; the local runner bridges ItemBatcher alone`,
          );
        }
        states[readerName] = {
          Type: 'Task',
          Resource: localFunctionArn(LOCAL_ITEM_READER_FUNCTION),
          Parameters: {
            ...(reader.Parameters as Json),
            ReaderConfig: reader.ReaderConfig ?? {},
            ...(batcher ? { ItemBatcher: batcherParameters(name, batcher) } : {}),
          },
          ResultPath: ITEMS_PATH,
          ...(state.Catch ? { Catch: state.Catch } : {}),
          Next: name,
        };
        taskFunctions.set(readerName, LOCAL_ITEM_READER_FUNCTION);
        redirects.set(name, readerName);
        delete state.ItemReader;
        delete state.ItemBatcher;
        state.ItemsPath = ITEMS_PATH;
      }
    }
    states[name] = state;
  }

  const redirect = (target: unknown) =>
    typeof target === 'string' ? (redirects.get(target) ?? target) : target;
  for (const [name, state] of Object.entries(states)) {
    if (name.endsWith(' [ItemReader]')) continue;
    if ('Next' in state) state.Next = redirect(state.Next);
    if ('Default' in state) state.Default = redirect(state.Default);
    if (Array.isArray(state.Choices)) {
      state.Choices = (state.Choices as Json[]).map((choice) => ({ ...choice, Next: redirect(choice.Next) }));
    }
    if (Array.isArray(state.Catch)) {
      state.Catch = (state.Catch as Json[]).map((c) => ({ ...c, Next: redirect(c.Next) }));
    }
  }
  // Catch lists copied into reader states must follow redirects too.
  for (const [name, state] of Object.entries(states)) {
    if (!name.endsWith(' [ItemReader]') || !Array.isArray(state.Catch)) continue;
    state.Catch = (state.Catch as Json[]).map((c) => ({ ...c, Next: redirect(c.Next) }));
  }
  return { ...machine, StartAt: String(redirect(machine.StartAt)), States: states };
}

/**
 * The reader Task's `ItemBatcher` parameter: the `*Path` fields become `.$`
 * fields and BatchInput stays as it is, so that the local library evaluates
 * them against the Map's input, as AWS does.
 */
function batcherParameters(mapName: string, batcher: Json): Json {
  const known = new Set([
    'MaxItemsPerBatch',
    'MaxItemsPerBatchPath',
    'MaxInputBytesPerBatch',
    'MaxInputBytesPerBatchPath',
    'BatchInput',
  ]);
  const unknown = Object.keys(batcher).filter((key) => !known.has(key));
  if (unknown.length > 0) {
    throw new Error(
      `Map state "${mapName}" has ItemBatcher fields the local runner does not know: ${unknown}`,
    );
  }
  const parameters: Json = {};
  for (const field of ['MaxItemsPerBatch', 'MaxInputBytesPerBatch'] as const) {
    if (batcher[field] !== undefined) parameters[field] = batcher[field];
    if (batcher[`${field}Path`] !== undefined) parameters[`${field}.$`] = batcher[`${field}Path`];
  }
  if (batcher.BatchInput !== undefined) parameters.BatchInput = batcher.BatchInput;
  return parameters;
}

/** What the reader Task receives as `ItemBatcher`, evaluated. */
export interface ItemBatcherSettings {
  readonly MaxItemsPerBatch?: number;
  readonly MaxInputBytesPerBatch?: number;
  readonly BatchInput?: unknown;
}

/** AWS's ceiling on a batch (a child execution's input). */
export const MAX_BATCH_INPUT_BYTES = 256 * 1024;

/**
 * Groups items as the Map's ItemBatcher does: consecutive items, each batch
 * `{ Items, BatchInput }` with at most MaxItemsPerBatch items and at most
 * MaxInputBytesPerBatch bytes of JSON. An item too big for a batch on its own
 * fails, as the Map run does on AWS.
 */
export function batchItems(items: readonly unknown[], settings: ItemBatcherSettings): Json[] {
  const maxItems = settings.MaxItemsPerBatch ?? Number.POSITIVE_INFINITY;
  const maxBytes = Math.min(settings.MaxInputBytesPerBatch ?? MAX_BATCH_INPUT_BYTES, MAX_BATCH_INPUT_BYTES);
  if (!(maxItems >= 1) || !(maxBytes >= 1)) {
    throw Object.assign(
      new Error('ItemBatcher: MaxItemsPerBatch and MaxInputBytesPerBatch must be positive'),
      {
        name: 'States.ItemReaderFailed',
      },
    );
  }
  const shape = (batch: unknown[]) =>
    settings.BatchInput === undefined ? { Items: batch } : { Items: batch, BatchInput: settings.BatchInput };
  // `{"Items":[]}` or `{"Items":[],"BatchInput":…}`, then each item and a comma between items.
  const emptyBytes = Buffer.byteLength(JSON.stringify(shape([])));
  const batches: Json[] = [];
  let batch: unknown[] = [];
  let bytes = emptyBytes;
  for (const item of items) {
    const itemBytes = Buffer.byteLength(JSON.stringify(item));
    if (batch.length > 0 && (batch.length >= maxItems || bytes + 1 + itemBytes > maxBytes)) {
      batches.push(shape(batch));
      batch = [];
      bytes = emptyBytes;
    }
    const added = (batch.length > 0 ? 1 : 0) + itemBytes;
    if (bytes + added > maxBytes) {
      throw Object.assign(
        new Error(`ItemBatcher: an item of ${itemBytes} bytes does not fit a batch of ${maxBytes} bytes`),
        { name: 'States.ItemReaderFailed' },
      );
    }
    batch.push(item);
    bytes += added;
  }
  if (batch.length > 0) batches.push(shape(batch));
  return batches;
}

/** Every Task of an item processor ends its item (as a success) instead of failing the Map. */
function tolerateFailures(processor: StateMachineDefinition, endName: string): StateMachineDefinition {
  const states: Record<string, Json> = {};
  for (const [name, state] of Object.entries(processor.States)) {
    states[name] =
      state.Type === 'Task'
        ? {
            ...state,
            Catch: [
              ...((state.Catch as Json[] | undefined) ?? []),
              { ErrorEquals: ['States.ALL'], ResultPath: '$.toleratedFailure', Next: endName },
            ],
          }
        : state;
  }
  states[endName] = { Type: 'Succeed' };
  return { ...processor, States: states };
}

/** Every state by name, at any depth (state names are unique in a state machine). */
export function statesByName(definition: StateMachineDefinition): Map<string, Json> {
  const states = new Map<string, Json>();
  for (const [name, state] of Object.entries(definition.States)) {
    states.set(name, state);
    const processor = (state.ItemProcessor ?? state.Iterator) as StateMachineDefinition | undefined;
    if (processor) for (const [inner, innerState] of statesByName(processor)) states.set(inner, innerState);
  }
  return states;
}

/** The names of all Wait states, at any depth (for wait overrides in tests). */
export function waitStateNames(definition: StateMachineDefinition): string[] {
  const names: string[] = [];
  for (const [name, state] of Object.entries(definition.States)) {
    if (state.Type === 'Wait') names.push(name);
    const processor = (state.ItemProcessor ?? state.Iterator) as StateMachineDefinition | undefined;
    if (processor) names.push(...waitStateNames(processor));
  }
  return names;
}

/** The names of all states that have a Retry, at any depth. */
export function retryingStateNames(definition: StateMachineDefinition): string[] {
  const names: string[] = [];
  for (const [name, state] of Object.entries(definition.States)) {
    if (Array.isArray(state.Retry)) names.push(name);
    const processor = (state.ItemProcessor ?? state.Iterator) as StateMachineDefinition | undefined;
    if (processor) names.push(...retryingStateNames(processor));
  }
  return names;
}

/** `TimeoutSeconds` of every Task state that has one, at any depth, in ms (the runner fences timed-out invocations). */
export function taskTimeouts(definition: StateMachineDefinition): Map<string, number> {
  const timeouts = new Map<string, number>();
  for (const [name, state] of Object.entries(definition.States)) {
    if (state.Type === 'Task' && typeof state.TimeoutSeconds === 'number') {
      timeouts.set(name, state.TimeoutSeconds * 1000);
    }
    const processor = (state.ItemProcessor ?? state.Iterator) as StateMachineDefinition | undefined;
    if (processor) for (const [inner, ms] of taskTimeouts(processor)) timeouts.set(inner, ms);
  }
  return timeouts;
}

/** A Task without TimeoutSeconds may run this long locally: a Lambda's 15-minute limit, with room to spare. */
export const LOCAL_DEFAULT_TASK_TIMEOUT_SECONDS = 3600;

/**
 * aws-local-stepfunctions times a Task out after 60 s unless told otherwise; AWS has no such default
 * (the Lambda's own timeout governs), and a 20,000-file Finalize runs longer. Returns a copy in which
 * every Task without TimeoutSeconds has the local default.
 */
export function withLocalTaskTimeouts<T extends StateMachineDefinition>(definition: T): T {
  const states: Record<string, Json> = {};
  for (const [name, state] of Object.entries(definition.States)) {
    const copy: Json = { ...state };
    if (copy.Type === 'Task' && copy.TimeoutSeconds === undefined)
      copy.TimeoutSeconds = LOCAL_DEFAULT_TASK_TIMEOUT_SECONDS;
    const processor = (copy.ItemProcessor ?? copy.Iterator) as StateMachineDefinition | undefined;
    if (processor) copy[copy.ItemProcessor ? 'ItemProcessor' : 'Iterator'] = withLocalTaskTimeouts(processor);
    states[name] = copy;
  }
  return { ...definition, States: states };
}
