/**
 * Built-in triggers for users from leases (README "Users from DHCP and RADIUS"): DHCP servers
 * acknowledging and releasing addresses, FreeRADIUS logging logins and accounting. Each line is a
 * state report, not an attempt to count: they are `everyLine` triggers (no threshold, no
 * de-duplication; a renewal or a release right after an ACK must reach the responder).
 *
 * Wording, as seen (dnsmasq 2.90 and FreeRADIUS 3.2.1 from Debian 12, run for this module):
 *   dnsmasq-dhcp: `DHCPACK(uxs0) 198.51.100.53 3a:95:af:d6:5b:7f alicepc`
 *                 `DHCPRELEASE(uxs0) 198.51.100.53 3a:95:af:d6:5b:7f ` (trailing space: no name)
 *                 with --log-dhcp each line starts with the transaction id: `29912587 DHCPACK(…`
 *   radiusd:      `Auth: (0) Login OK: [alice] (from client localhost port 7 cli 3A-95-AF-D6-5B-7F)`
 *   linelog (FreeRADIUS's shipped log_accounting wording):
 *                 `Connect: [alice] (did  cli 3A-95-AF-D6-5B-7F port 7 ip 198.51.100.53)`
 *                 `Disconnect: [alice] (did  cli 3A-95-AF-D6-5B-7F port 7 ip 198.51.100.53) 30 seconds`
 * ISC dhcpd 4.4.3-P1 and Kea 2.2.0 (Debian 12, run once by hand against udhcpc; not in the tests):
 *   dhcpd:     `DHCPACK on 198.51.100.50 to 02:be:f0:00:00:02 (bobpc) via uxds`
 *              `DHCPRELEASE of 198.51.100.50 from 02:be:f0:00:00:02 (bobpc) via uxds (found)`
 *   kea-dhcp4 (with syslog's default layout `%-5p [%c.%t] %m`):
 *              `INFO  [kea-dhcp4.leases.139948014891520] DHCP4_LEASE_ALLOC [hwtype=1 02:be:f0:00:00:02],
 *               cid=[01:02:be:f0:00:00:02], tid=0x3d1e252b: lease 198.51.100.70 has been allocated for 120 seconds`
 *              `INFO  [kea-dhcp4.leases.139948014891520] DHCP4_RELEASE [hwtype=1 02:be:f0:00:00:02],
 *               cid=[01:02:be:f0:00:00:02], tid=0x29d17906: address 198.51.100.70 was released properly.`
 *
 * dnsmasq's ACK line carries no lease time (only its --log-dhcp option dump does, on another
 * line): the lease length comes from the responder action's `leaseSec`, which must match the
 * dhcp-range's. Every pattern is anchored at both ends and the attacker-influenced parts (the
 * client's host name, the RADIUS user name) are bounded and may hold no space, bracket or "/":
 * the address and MAC a line yields are the ones the server printed in their fixed places.
 */
import type { TriggerSpec } from './triggers.js';

const ADDR = '(?<addr>[0-9A-Fa-f.:]{2,45})';
/** aa:bb:cc:dd:ee:ff, AA-BB-…, aabb.ccdd.eeff, aabbccddeeff; checked again by the responder. */
const MAC = '(?<mac>[0-9A-Fa-f]{2}(?:[:-]?[0-9A-Fa-f]{2}){5}|[0-9A-Fa-f]{4}\\.[0-9A-Fa-f]{4}\\.[0-9A-Fa-f]{4})';
const IFACE = '[A-Za-z0-9._@-]{1,15}';
const HOST = '[^\\s()]{0,255}';
/** A RADIUS user name as FreeRADIUS prints it: no space, "]" or "/" (auth_goodpass appends "/password"). */
const RUSER = '(?<user>[^\\]\\s/]{1,64})';
const END = '[ \\t]*$';
/** Kea's log4cplus head: syslog's default `INFO  [kea-dhcp4.leases.139948014891520] `, stdout's `[…leases/PID.TID]`. */
const KEA_HEAD = '(?:[A-Z]{4,5} {1,2}\\[kea-dhcp4\\.[a-z0-9-]{1,32}(?:[./][0-9.]{1,60})?\\] )?';

/**
 * Events whose lines grant access: a device may send them only when its `events` lists them
 * (pipeline.ts), and only they may run `user-lease` (reactorConfig.ts).
 */
export const GRANTING_EVENTS: readonly string[] = ['dhcp-lease', 'radius-auth'];

export const DHCP_PROGRAMS = ['dnsmasq-dhcp', 'dnsmasq', 'dhcpd', 'kea-dhcp4'];
export const RADIUS_PROGRAMS = ['radiusd', 'freeradius'];

const lease = (name: string, programs: string[], pattern: string): TriggerSpec => ({
  name,
  event: 'dhcp-lease',
  programs,
  pattern,
  subject: 'mac',
  subjectKind: 'name',
  perDevice: false,
  everyLine: true,
});

const radius = (name: string, pattern: string): TriggerSpec => ({
  name,
  event: 'radius-auth',
  programs: RADIUS_PROGRAMS,
  pattern,
  subject: 'user',
  subjectKind: 'name',
  perDevice: false,
  everyLine: true,
});

export const LEASE_TRIGGERS: Readonly<Record<string, readonly TriggerSpec[]>> = {
  'dhcp-lease': [
    lease(
      'dnsmasq-dhcp',
      ['dnsmasq-dhcp', 'dnsmasq'],
      `^(?:[0-9]{1,10} )?(?<op>DHCPACK|DHCPRELEASE)\\(${IFACE}\\) ${ADDR} ${MAC}(?: ${HOST})?${END}`,
    ),
    lease(
      'isc-dhcpd-ack',
      ['dhcpd'],
      `^(?<op>DHCPACK) on ${ADDR} to ${MAC}(?: \\(${HOST}\\))? via \\S{1,64}(?: relay \\S{1,64})?(?: lease-duration (?<lease>[0-9]{1,10}))?(?: \\(RENEW\\))?${END}`,
    ),
    lease(
      'isc-dhcpd-release',
      ['dhcpd'],
      `^(?<op>DHCPRELEASE) of ${ADDR} from ${MAC}(?: \\(${HOST}\\))? via \\S{1,64}(?: \\((?:found|not found)\\))?${END}`,
    ),
    lease(
      'kea-dhcp4-alloc',
      ['kea-dhcp4'],
      `^${KEA_HEAD}(?<op>DHCP4_LEASE_ALLOC) \\[hwtype=1 ${MAC}\\], cid=\\[[^\\]]{0,300}\\], tid=0x[0-9a-fA-F]{1,8}: lease ${ADDR} has been allocated for (?<lease>[0-9]{1,10}) seconds${END}`,
    ),
    lease(
      'kea-dhcp4-release',
      ['kea-dhcp4'],
      `^${KEA_HEAD}(?<op>DHCP4_RELEASE) \\[hwtype=1 ${MAC}\\], cid=\\[[^\\]]{0,300}\\], tid=0x[0-9a-fA-F]{1,8}: address ${ADDR} was released properly\\.${END}`,
    ),
  ],
  radius: [
    radius(
      'freeradius-login-ok',
      `^(?:Auth: )?(?:\\([0-9]{1,10}\\) )?(?<op>Login OK): \\[${RUSER}\\] \\(from client [^\\s()]{1,64} port [0-9]{1,10} cli ${MAC}\\)${END}`,
    ),
    radius(
      'freeradius-accounting',
      `^(?<op>Connect|Disconnect): \\[${RUSER}\\] \\(did [^\\s()]{0,64} cli ${MAC} port [0-9]{0,10} ip (?:${ADDR})?\\)(?: [0-9]{0,10} seconds)?${END}`,
    ),
  ],
};

/** What a job's `op` field means to the responder (userLease.ts). */
export const LEASE_OPS: Readonly<Record<string, 'lease' | 'release' | 'login' | 'logout'>> = {
  DHCPACK: 'lease',
  DHCP4_LEASE_ALLOC: 'lease',
  DHCPRELEASE: 'release',
  DHCP4_RELEASE: 'release',
  'Login OK': 'login',
  Connect: 'login',
  Disconnect: 'logout',
};
