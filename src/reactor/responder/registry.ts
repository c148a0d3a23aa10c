/**
 * Every responder action, registered in one place: action type -> factory of its runner (the
 * shape of Renovate's manager and datasource maps). The map's type has one key per action type
 * of the config (ActionConfig), so an action the config can name but nothing here builds is a
 * compile error, and each factory receives its own action's config, already narrowed.
 *
 * Adding an action: its `if`/`then` branch in config/reactorSchema.ts, its meaning in
 * config/reactorConfig.ts (parseAction), its runner in a module of its own, and one line here.
 */
import type { ActionConfig, ActionType } from '../config/reactorConfig.js';
import type { ActionRunner } from './actionTypes.js';
import { type BanContext, BanRunner } from './banAction.js';
import { ObserveRunner } from './observeAction.js';
import { UserLeaseRunner } from './userLease.js';
import { type VyosFleet, VyosAddressGroupRunner, VyosDisableInterfaceRunner } from './vyosActions.js';

/** What runners may use, built once by the composition root (responderMain.ts). */
export interface ActionContext extends BanContext {
  readonly fleet: VyosFleet;
  /** Why an address must not be acted on (the protected list, rules_allow), or null. */
  readonly isProtected: (address: string) => Promise<string | null>;
}

type ActionOf = { readonly [A in ActionConfig as A['type']]: A };

export type ActionFactory<A extends ActionConfig> = (action: A, ctx: ActionContext) => ActionRunner;

export type ActionRegistry = { readonly [K in ActionType]: ActionFactory<ActionOf[K]> };

export const ACTIONS: ActionRegistry = {
  ban: (action, ctx) => new BanRunner(action, ctx),
  'vyos-address-group': (action, ctx) =>
    new VyosAddressGroupRunner(action, ctx.fleet, ctx.isProtected, { kv: ctx.kv, prefix: ctx.stateKvPrefix, now: ctx.now }),
  'vyos-disable-interface': (action, ctx) => new VyosDisableInterfaceRunner(action, ctx.fleet),
  'user-lease': (action, ctx) => new UserLeaseRunner(action, { kv: ctx.kv, stateKvPrefix: ctx.stateKvPrefix, now: ctx.now }),
  observe: (action, ctx) => new ObserveRunner(action, { kv: ctx.kv, now: ctx.now }),
};

function build<K extends ActionType>(type: K, action: ActionOf[K], ctx: ActionContext, registry: ActionRegistry): ActionRunner {
  const factory: ActionFactory<ActionOf[K]> = registry[type];
  return factory(action, ctx);
}

/** The runner for one configured action. */
export function runnerFor(action: ActionConfig, ctx: ActionContext, registry: ActionRegistry = ACTIONS): ActionRunner {
  return build(action.type, action, ctx, registry);
}
