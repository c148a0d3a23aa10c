/**
 * The operator commands, registered on the program in one call from main.ts: access entries
 * (client, alias, allow, deny), services, purge-expired, and doctor.
 */
import type { Command } from 'commander';
import { registerDoctorCommand } from '../doctor.js';
import { registerAliasCommands } from './alias.js';
import { registerClientCommands } from './client.js';
import { registerPurgeCommand } from './purge.js';
import { registerServiceCommands } from './service.js';
import { registerStaticSetCommands } from './staticSets.js';

export function registerAccessCommands(program: Command): void {
  registerClientCommands(program);
  registerAliasCommands(program);
  registerStaticSetCommands(program);
  registerServiceCommands(program);
  registerPurgeCommand(program);
  registerDoctorCommand(program);
}
