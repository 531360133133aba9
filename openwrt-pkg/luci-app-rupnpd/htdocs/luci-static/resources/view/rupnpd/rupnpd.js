'use strict';
'require view';
'require dom';
'require poll';
'require rpc';
'require uci';
'require ui';
'require form';
'require tools.widgets as widgets';

// The daemon's own ubus object; rpcd forwards these calls as the logged-in user's ACL allows
// (root/usr/share/rpcd/acl.d/luci-app-rupnpd.json). While the daemon is not running uhttpd answers
// "Object not found", which rpc.js turns into a rejection: load() and refresh() read that as {}.
const callStatus = rpc.declare({
	object: 'rupnpd',
	method: 'status',
	expect: { '': {} }
});

const callList = rpc.declare({
	object: 'rupnpd',
	method: 'list',
	expect: { '': {} }
});

const callDelete = rpc.declare({
	object: 'rupnpd',
	method: 'delete',
	params: [ 'proto', 'external_port' ],
	reject: true
});

const callFlush = rpc.declare({
	object: 'rupnpd',
	method: 'flush',
	expect: { deleted: 0 },
	reject: true
});

// The switches `set` takes, in the order of its positional parameters; each is optional and
// applied live and stored in /etc/config/upnpd by the daemon.
const SWITCHES = [
	[ 'enabled', _('Service') ],
	[ 'enable_upnp', _('UPnP IGD') ],
	[ 'enable_natpmp', _('NAT-PMP') ],
	[ 'enable_pcp', _('PCP') ],
	[ 'secure_mode', _('Secure mode') ],
	[ 'log_packets', _('Packet logging') ],
	[ 'log_connections', _('Connection logging') ]
];

const callSet = rpc.declare({
	object: 'rupnpd',
	method: 'set',
	params: SWITCHES.map(sw => sw[0]),
	reject: true
});

const callHostHints = rpc.declare({
	object: 'luci-rpc',
	method: 'getHostHints',
	expect: { '': {} }
});

// Start, stop and restart /etc/init.d/rupnpd, as luci-app-upnp does.
const callInitAction = rpc.declare({
	object: 'luci',
	method: 'setInitAction',
	params: [ 'name', 'action' ],
	expect: { result: false }
});

// Why a call was refused, in words. rpc.js rejects a call whose ubus status is not 0 ("RPC call
// to rupnpd/delete failed with ubus code 4: …") and drops the reply's data, so the daemon's own
// explanation (`{"error": …}` before the status) never reaches the page. The daemon keeps its
// statuses, which the `ubus` command's exit status and scripts rely on; the page says what each
// status means for the call it made (README, "ubus API").
const REFUSED = {
	'delete': {
		2: _('The service did not accept the protocol or port of this mapping.'),
		4: _('This mapping no longer exists: it expired or was deleted in the meantime.')
	},
	'set': {
		2: _('The service does not know this switch; is the rupnpd package older than this page?'),
		13: _('The service could not store the change in /etc/config/upnpd (is the flash full or read-only?); nothing was changed.')
	}
};
const UBUS_STATUS = {
	3: _('The service does not offer this action; is the rupnpd package older than this page?'),
	7: _('The service did not answer in time. Try again.'),
	9: _('The service could not answer; see the system log.')
};
// JSON-RPC errors uhttpd answers before the call reaches the daemon.
const RPC_ERROR = {
	'-32000': _('The rupnpd service is not running.'),
	'-32002': _('Your login may not do this (it lacks the ACL group luci-app-rupnpd).'),
	'-32003': _('The service did not answer in time. Try again.')
};

function refusal(method, err) {
	const text = String((err && err.message) || err);
	let m = /failed with ubus code (\d+)/.exec(text);

	if (m)
		return (REFUSED[method] || {})[+m[1]] || UBUS_STATUS[+m[1]] || text;

	m = /failed with error (-?\d+)/.exec(text);

	return (m && RPC_ERROR[m[1]]) || text;
}

// Everything the tables show comes from LAN clients (descriptions, DHCP host names) or the
// daemon: a table cell is inserted as HTML, so every text is escaped.
function esc(value) {
	return '%h'.format(value != null ? value : '');
}

function notify(text, cls) {
	ui.addNotification(null, E('p', [ text ]), cls || 'error');
}

// The daemon's STUN verdicts (status.stun.reachability) in words.
const REACHABILITY = {
	'endpoint-independent': _('yes: nothing in front filters unsolicited traffic'),
	'address-dependent': _('no: the NAT in front only lets in traffic from addresses this router contacted'),
	'address-and-port-dependent': _('no: the NAT in front only lets in replies to this router\'s own connections'),
	'port-translated': _('no: the NAT in front changes port numbers'),
	'unknown': _('unknown')
};

const ORIGINS = {
	'upnp-igdv1': _('UPnP IGDv1'),
	'upnp-igdv2': _('UPnP IGDv2'),
	'nat-pmp': _('NAT-PMP'),
	'pcp': _('PCP')
};

// The daemon's `firewall` status: whose hooks lead to its rules.
const FIREWALL = {
	'fw4': _('firewall4'),
	'own': _('own rules (no firewall4)'),
	'down': _('down (firewall4 stopped)')
};

// getHostHints is keyed by MAC address; the tables need the name behind an IP address.
function hostNames(hints) {
	const names = {};

	for (const mac in hints) {
		const hint = hints[mac] || {};

		if (!hint.name)
			continue;

		for (const addr of L.toArray(hint.ipaddrs).concat(L.toArray(hint.ip6addrs)))
			names[addr] = hint.name;
	}

	return names;
}

function formatExpires(seconds) {
	return (+seconds > 0) ? '%t'.format(+seconds) : _('Permanent');
}

function formatTraffic(packets, bytes) {
	return _('%d packets, %1024.2mB').format(+packets || 0, +bytes || 0);
}

function formatAddrPort(addr, port) {
	if (!addr)
		return _('any');

	const host = String(addr).indexOf(':') >= 0 ? '[%s]'.format(addr) : addr;

	return (+port > 0) ? '%s:%d'.format(host, +port) : host;
}

function tableHead(titles) {
	return E('tr', { 'class': 'tr table-titles' },
		titles.map(t => E('th', { 'class': 'th' }, t)));
}

return view.extend({
	load() {
		return Promise.all([
			L.resolveDefault(callStatus(), {}),
			L.resolveDefault(callList(), {}),
			L.resolveDefault(callHostHints(), {}),
			uci.load('upnpd')
		]);
	},

	// --- live state -------------------------------------------------------------------------

	handleSwitch(name, value) {
		const args = SWITCHES.map(sw => (sw[0] == name) ? value : undefined);

		return callSet.apply(null, args).then(() => {
			// The daemon has stored the switch in /etc/config/upnpd; reload so that the settings
			// below show it too.
			uci.unload('upnpd');
			window.location.reload();
		}).catch(err => {
			notify(_('Could not change the setting: %s').format(refusal('set', err)));
		});
	},

	handleInit(action) {
		return callInitAction('rupnpd', action).then(ok => {
			if (!ok)
				notify(_('Could not %s the service; see the system log.').format(action));
		}).catch(err => {
			notify(_('Could not %s the service: %s').format(action, refusal('setInitAction', err)));
		}).then(() => this.refresh());
	},

	handleDelete(mapping, ev) {
		const row = dom.parent(ev.currentTarget, '.tr');

		if (row)
			row.style.opacity = 0.5;

		return callDelete(mapping.proto, +mapping.external_port).catch(err => {
			notify(_('Could not delete the mapping: %s').format(refusal('delete', err)));
		}).then(() => this.refresh());
	},

	handleFlush() {
		if (!confirm(_('Delete every port mapping now? Clients will have to request them again.')))
			return Promise.resolve();

		return callFlush().then(deleted => {
			notify(_('%d port mappings deleted.').format(+deleted || 0), 'info');
		}).catch(err => {
			notify(_('Could not delete the mappings: %s').format(refusal('flush', err)));
		}).then(() => this.refresh());
	},

	refresh() {
		return Promise.all([
			L.resolveDefault(callStatus(), {}),
			L.resolveDefault(callList(), {}),
			L.resolveDefault(callHostHints(), {})
		]).then(data => this.updateLive(data[0], data[1], data[2]));
	},

	initButton(action, title, cls) {
		return E('button', {
			'class': 'btn cbi-button ' + cls,
			'click': ui.createHandlerFn(this, 'handleInit', action)
		}, [ title ]);
	},

	renderStatus(status) {
		if (status.version == null)
			return E('div', {}, [
				E('p', { 'class': 'alert-message warning' }, [
					_('The rupnpd service is not running. Check the system log; it refuses to start with an invalid /etc/config/upnpd.')
				]),
				this.initButton('start', _('Start'), 'cbi-button-positive')
			]);

		const counts = status.mappings || {};
		const stun = status.stun;
		const rows = [
			[ _('Version'), status.version ],
			[ _('Uptime'), '%t'.format(+status.uptime || 0) ],
			[ _('External address'), status.external_ip || _('none reported') ],
			[ _('WAN device'), status.wan_device || _('none') ],
			[ _('WAN address'), status.wan_ip || _('none') ],
			[ _('LAN devices'), L.toArray(status.lan_devices).join(', ') || _('none') ],
			[ _('Firewall'), FIREWALL[status.firewall] || status.firewall || _('unknown') ],
			[ _('Port mappings'), _('%d (TCP %d, UDP %d; UPnP %d, NAT-PMP %d, PCP %d), %d IPv6 pinholes').format(
				+counts.total || 0, +counts.tcp || 0, +counts.udp || 0,
				+counts.upnp || 0, +counts.natpmp || 0, +counts.pcp || 0, +counts.pinholes || 0) ],
			[ _('New port mappings'), (status.new_mappings == 'refused') ? _('refused (see below)') : _('allowed') ]
		];

		// What STUN found, in the daemon's words (they are written for the router's owner).
		if (stun) {
			rows.push([ _('Reachable from the Internet'), REACHABILITY[stun.reachability] || stun.reachability ]);
			rows.push([ _('STUN findings'), stun.reason ]);
			rows.push([ _('STUN checks'), (stun.last_check != null)
				? _('last %s ago, next in %s (server %s)').format('%t'.format(+stun.last_check), '%t'.format(+stun.next_check || 0), stun.server)
				: _('none yet (server %s)').format(stun.server) ]);
		}

		const switches = SWITCHES.map(sw => {
			const on = !!status[sw[0]];

			return E('tr', { 'class': 'tr' }, [
				E('td', { 'class': 'td left', 'width': '33%' }, [ sw[1] ]),
				E('td', { 'class': 'td left' }, [ on ? _('on') : _('off') ]),
				E('td', { 'class': 'td right' }, E('button', {
					'class': 'btn cbi-button ' + (on ? 'cbi-button-negative' : 'cbi-button-positive'),
					'click': ui.createHandlerFn(this, 'handleSwitch', sw[0], !on)
				}, [ on ? _('Switch off') : _('Switch on') ]))
			]);
		});

		// Values as text nodes: the device names and addresses are not ours to trust either.
		const nodes = [
			E('table', { 'class': 'table' }, rows.map(r => E('tr', { 'class': 'tr' }, [
				E('td', { 'class': 'td left', 'width': '33%' }, [ r[0] ]),
				E('td', { 'class': 'td left' }, [ String(r[1] != null ? r[1] : '') ])
			]))),
			E('div', { 'class': 'right' }, [
				this.initButton('restart', _('Restart'), 'cbi-button-action'),
				' ',
				this.initButton('stop', _('Stop'), 'cbi-button-negative')
			])
		];

		if (status.firewall == 'down')
			nodes.push(E('p', { 'class': 'alert-message warning' }, [
				_('The firewall is down (firewall4 is stopped): the port mappings are kept and go back in place when it starts again; new ones are refused until then.')
			]));

		if (status.new_mappings == 'refused')
			nodes.push(E('p', { 'class': 'alert-message warning' }, [ String(status.new_mappings_reason || '') ]));
		else if (status.external_ip_private)
			nodes.push(E('p', { 'class': 'alert-message warning' }, [
				_('The external address is private or shared (CGNAT): mapped ports are not reachable from the Internet unless the upstream network forwards them.')
			]));

		// The daemon's own sentence: which bridge and setting keep a host from reaching its own
		// mapping through the external address.
		if (status.enabled && status.hairpin_self === false && status.hairpin_self_reason && status.hairpin_self_reason != 'hairpin is off')
			nodes.push(E('p', { 'class': 'alert-message warning' }, [ String(status.hairpin_self_reason) ]));

		nodes.push(E('h4', [ _('Switches (applied immediately)') ]));
		nodes.push(E('table', { 'class': 'table' }, switches));

		return E('div', {}, nodes);
	},

	mappingRows(list, names) {
		return L.toArray(list.mappings).map(m => [
			esc(names[m.internal_ip] || _('Unknown')),
			esc(m.proto),
			esc(m.external_port),
			esc(formatAddrPort(m.internal_ip, m.internal_port)),
			esc(formatAddrPort(m.remote_host, 0)),
			esc(m.description),
			esc(ORIGINS[m.origin] || m.origin),
			esc(formatExpires(m.expires)),
			esc(formatTraffic(m.packets, m.bytes)),
			E('button', {
				'class': 'btn cbi-button-remove',
				'title': _('Delete this mapping'),
				'click': ui.createHandlerFn(this, 'handleDelete', m)
			}, [ _('Delete') ])
		]);
	},

	// Pinholes come from WANIPv6FirewallControl (upnp-igdv2) and from PCP over IPv6 (MAP, or PEER
	// for one remote peer): one table, each row with its origin.
	pinholeRows(list, names) {
		return L.toArray(list.pinholes).map(p => [
			esc(p.id),
			esc(names[p.internal_ip] || _('Unknown')),
			esc(p.proto),
			esc(formatAddrPort(p.internal_ip, p.internal_port)),
			esc(formatAddrPort(p.remote_host, p.remote_port)),
			esc((p.origin == 'pcp' && p.peer) ? _('PCP PEER') : (ORIGINS[p.origin] || p.origin)),
			esc(formatExpires(p.expires)),
			esc(formatTraffic(p.packets, p.bytes))
		]);
	},

	updateLive(status, list, hints) {
		const names = hostNames(hints);

		dom.content(this.statusNode, this.renderStatus(status));
		cbi_update_table(this.mappingsTable, this.mappingRows(list, names),
			E('em', [ _('There are no active port mappings.') ]));
		cbi_update_table(this.pinholesTable, this.pinholeRows(list, names),
			E('em', [ _('There are no open IPv6 pinholes.') ]));
	},

	// Builds the status box and the two tables; updateLive() fills them, now and at every poll.
	renderLive() {
		this.statusNode = E('div', {}, E('em', { 'class': 'spinning' }, _('Loading…')));
		this.mappingsTable = E('table', { 'class': 'table cbi-section-table' }, [
			tableHead([
				_('Host'), _('Protocol'), _('External port'), _('Internal address'),
				_('Remote host'), _('Description'), _('Added via'), _('Expires'),
				_('Traffic'), ''
			])
		]);
		this.pinholesTable = E('table', { 'class': 'table cbi-section-table' }, [
			tableHead([
				_('ID'), _('Host'), _('Protocol'), _('Internal address'),
				_('Remote host'), _('Added via'), _('Expires'), _('Traffic')
			])
		]);

		return E('div', {}, [
			E('div', { 'class': 'cbi-section' }, [
				E('h3', _('Service status')),
				this.statusNode
			]),
			E('div', { 'class': 'cbi-section cbi-tblsection' }, [
				E('h3', _('Active port mappings')),
				this.mappingsTable,
				E('div', { 'class': 'right' }, E('button', {
					'class': 'btn cbi-button-remove',
					'click': ui.createHandlerFn(this, 'handleFlush')
				}, _('Delete all mappings')))
			]),
			E('div', { 'class': 'cbi-section cbi-tblsection' }, [
				E('h3', _('IPv6 pinholes')),
				this.pinholesTable
			])
		]);
	},

	// --- settings -----------------------------------------------------------------------------

	renderForm() {
		let m, s, o;

		m = new form.Map('upnpd', _('UPnP IGD & PCP/NAT-PMP'),
			_('rupnpd lets programs on the local network open ports on the router by themselves, with UPnP IGD, NAT-PMP or PCP. Only the ports the permission rules allow can be opened.'));

		if (!uci.get('upnpd', 'config')) {
			ui.addNotification(null, E('p',
				_('/etc/config/upnpd has no "config" section; reinstall the rupnpd package to restore the default file.')), 'warning');
			m.readonly = true;
		}

		s = m.section(form.NamedSection, 'config', 'upnpd', _('Settings'));
		s.addremove = false;
		s.tab('general', _('General'));
		s.tab('advanced', _('Advanced'));
		s.tab('rules', _('Permission rules'));

		// General

		o = s.taboption('general', form.Flag, 'enabled', _('Enable service'),
			_('When off the daemon keeps running but answers no requests and holds no mappings.'));
		o.rmempty = false;

		o = s.taboption('general', form.Flag, 'enable_upnp', _('Enable UPnP IGD'));
		o.default = '1';
		o.rmempty = false;

		o = s.taboption('general', form.Flag, 'enable_natpmp', _('Enable NAT-PMP'));
		o.default = '1';
		o.rmempty = false;

		o = s.taboption('general', form.ListValue, 'enable_pcp', _('Enable PCP'),
			_('Port Control Protocol (RFC 6887). miniupnpd switches it together with NAT-PMP.'));
		o.value('', _('Same as NAT-PMP'));
		o.value('1', _('On'));
		o.value('0', _('Off'));

		o = s.taboption('general', form.Flag, 'secure_mode', _('Secure mode'),
			_('A client may only open ports to its own address and delete only its own mappings.'));
		o.default = '1';
		o.rmempty = false;

		o = s.taboption('general', form.Flag, 'igdv1', _('IGDv1 compatibility'),
			_('Describe the router as an IGDv1 device (IPv4 only); some clients fail with IGDv2.'));
		o.depends('enable_upnp', '1');

		o = s.taboption('general', widgets.NetworkSelect, 'external_iface', _('External interface'),
			_('Leave empty to use the interface with the IPv4 default route.'));
		o.nocreate = true;
		o.optional = true;

		o = s.taboption('general', widgets.NetworkSelect, 'external_iface6', _('External IPv6 interface'),
			_('Leave empty to use the interface with the IPv6 default route.'));
		o.nocreate = true;
		o.optional = true;

		o = s.taboption('general', widgets.ZoneSelect, 'external_zone', _('External zone'),
			_('Used when no external interface is set: the first device of this firewall zone.'));
		o.nocreate = true;
		o.optional = true;

		// miniupnpd's schema keeps the LAN interfaces in one space-separated option.
		o = s.taboption('general', widgets.NetworkSelect, 'internal_iface', _('Internal interfaces'),
			_('The networks whose clients may request port mappings.'));
		o.nocreate = true;
		o.multiple = true;
		o.rmempty = false;
		o.cfgvalue = section_id => L.toArray(uci.get('upnpd', section_id, 'internal_iface'));
		o.write = (section_id, value) => uci.set('upnpd', section_id, 'internal_iface', L.toArray(value).join(' '));

		o = s.taboption('general', form.Value, 'download', _('Download speed'),
			_('Reported to UPnP clients, in KiB/s.'));
		o.datatype = 'uinteger';
		o.placeholder = '1024';
		o.depends('enable_upnp', '1');

		o = s.taboption('general', form.Value, 'upload', _('Upload speed'),
			_('Reported to UPnP clients, in KiB/s.'));
		o.datatype = 'uinteger';
		o.placeholder = '512';
		o.depends('enable_upnp', '1');

		s.taboption('general', form.Flag, 'log_output', _('Debug logging'),
			_('Write debugging messages to the system log.'));

		s.taboption('general', form.Flag, 'log_packets', _('Log packets'),
			_('Log packets through mapped ports to the kernel log (rate-limited).'));

		s.taboption('general', form.Flag, 'log_connections', _('Log connections'),
			_('Log each new connection through a mapped port once.'));

		// Advanced

		o = s.taboption('advanced', form.Value, 'port', _('HTTP port'),
			_('Port of the UPnP description, control and event URLs.'));
		o.datatype = 'port';
		o.placeholder = '5000';

		o = s.taboption('advanced', form.Value, 'external_ip', _('External address'),
			_('Report this IPv4 address instead of the WAN interface\'s.'));
		o.datatype = 'ip4addr("nomask")';

		s.taboption('advanced', form.Flag, 'ext_allow_private_ipv4', _('Allow a private external address'),
			_('A private or shared WAN address (10.x, 172.16–31.x, 192.168.x, or 100.64–127.x from a carrier-grade NAT) means another NAT sits in front of this router, and a port opened here is not open on the Internet. Off, as miniupnpd: no external address is reported and new port mappings are refused, so programs try other ways at once. On: the WAN address is reported and mappings are given out; choose this only if the NAT in front forwards ports to this router. With STUN, its findings decide instead once it has them.'));

		s.taboption('advanced', form.Flag, 'use_stun', _('Use STUN'),
			_('Ask a STUN server for the public address in front of this router (reported to programs instead of a private WAN address) and test whether the Internet can reach this router through the NAT in front. New port mappings are refused when it cannot. Checked at start, when the WAN changes and every 10 minutes: 8 to 13 small packets an hour.'));

		o = s.taboption('advanced', form.Value, 'stun_host', _('STUN server'),
			_('A server with RFC 5780 support (two addresses) can also test filtering; others only give the public address.'));
		o.datatype = 'host';
		o.depends('use_stun', '1');

		o = s.taboption('advanced', form.Value, 'stun_port', _('STUN port'));
		o.datatype = 'port';
		o.placeholder = '3478';
		o.depends('use_stun', '1');

		o = s.taboption('advanced', form.Flag, 'stun_allow_filtered', _('Keep mappings when filtered'),
			_('Give out port mappings even when STUN finds that the NAT in front filters unsolicited traffic, or cannot tell; useful only if it forwards some ports to this router anyway.'));
		o.depends('use_stun', '1');

		o = s.taboption('advanced', form.Flag, 'hairpin', _('NAT reflection'),
			_('Let local clients reach mapped ports through the external address.'));
		o.default = '1';
		o.rmempty = false;

		s.taboption('advanced', form.Flag, 'pcp_allow_thirdparty', _('PCP third-party mappings'),
			_('Let a PCP client map ports for another local address (THIRD_PARTY option).'));

		s.taboption('advanced', form.Flag, 'ipv6_disable', _('Disable IPv6'));

		o = s.taboption('advanced', form.Flag, 'ipv6_pinholes', _('IPv6 pinholes'),
			_('Let clients open inbound IPv6 ports to themselves.'));
		o.default = '1';
		o.rmempty = false;
		o.depends('ipv6_disable', '0');

		// Limits: unsigned numbers whose placeholder is the daemon's default.
		for (const opt of [
			[ 'max_mappings', _('Mappings in total'), '4096' ],
			[ 'max_mappings_per_client', _('Mappings per client'), '1024' ],
			[ 'absent_host_timeout', _('Absent host timeout'), '600',
				_('Seconds a host may be missing from the neighbour tables before its mappings are removed; 0 keeps them.') ],
			[ 'min_lifetime', _('Shortest lifetime'), '120',
				_('Seconds; shorter NAT-PMP and PCP requests are raised to this.') ],
			[ 'max_lifetime', _('Longest lifetime'), '86400',
				_('Seconds; longer NAT-PMP and PCP requests are cut to this.') ],
			[ 'upnp_max_lease', _('Longest UPnP lease'), '0',
				_('Seconds, also for "permanent" UPnP mappings; 0 sets no limit.') ],
			[ 'max_subscribers', _('Event subscribers in total'), '64' ],
			[ 'max_subscribers_per_client', _('Event subscribers per client'), '8' ]
		]) {
			o = s.taboption('advanced', form.Value, opt[0], opt[1], opt[3]);
			o.datatype = 'uinteger';
			o.placeholder = opt[2];
		}

		o = s.taboption('advanced', form.Value, 'notify_interval', _('Announcement interval'),
			_('Seconds between SSDP announcements.'));
		o.datatype = 'min(900)';
		o.placeholder = '900';

		o = s.taboption('advanced', form.Value, 'friendly_name', _('Device name'),
			_('The name UPnP clients show for the router.'));
		o.datatype = 'maxlength(64)';

		o = s.taboption('advanced', form.Value, 'presentation_url', _('Presentation URL'),
			_('Web page UPnP clients link to; by default the router\'s first LAN address.'));
		o.placeholder = 'http://192.168.1.1/';

		o = s.taboption('advanced', form.Value, 'model_number', _('Model number'));
		o.datatype = 'maxlength(48)';

		o = s.taboption('advanced', form.Value, 'serial_number', _('Serial number'));
		o.datatype = 'maxlength(10)';

		o = s.taboption('advanced', form.Value, 'uuid', _('Device UUID'),
			_('Leave empty to have one generated.'));

		o = s.taboption('advanced', form.Flag, 'system_uptime', _('Report system uptime'),
			_('Report the router\'s uptime instead of the service\'s.'));
		o.default = '1';
		o.rmempty = false;

		o = s.taboption('advanced', form.Value, 'upnp_lease_file', _('Lease file'),
			_('Mappings are saved here and restored after a restart.'));
		o.placeholder = '/var/run/rupnpd.leases';

		o = s.taboption('advanced', form.Value, 'upnp_lease_file6', _('IPv6 lease file'));
		o.placeholder = '/var/run/rupnpd.leases6';

		const nftName = (section_id, value) =>
			(value == '' || /^[A-Za-z_][A-Za-z0-9_]{0,63}$/.test(value)) ? true : _('Expecting an nftables name');

		for (const opt of [
			[ 'nft_table', _('nftables table'), 'fw4' ],
			[ 'nft_forward_chain', _('nftables forward chain'), 'upnp_forward' ],
			[ 'nft_prerouting_chain', _('nftables prerouting chain'), 'upnp_prerouting' ],
			[ 'nft_postrouting_chain', _('nftables postrouting chain'), 'upnp_postrouting' ]
		]) {
			o = s.taboption('advanced', form.Value, opt[0], opt[1]);
			o.placeholder = opt[2];
			o.validate = nftName;
		}

		// Permission rules

		o = s.taboption('rules', form.SectionValue, '_perm_rules', form.GridSection, 'perm_rule', null,
			_('Which internal addresses and ports may be mapped to which external ports. Rules are checked from top to bottom and the first match decides; a request that no rule matches is denied. They apply to IPv4 mappings.'));

		const rules = o.subsection;
		rules.anonymous = true;
		rules.addremove = true;
		rules.sortable = true;
		rules.nodescriptions = true;

		rules.option(form.Value, 'comment', _('Comment'));

		o = rules.option(form.Value, 'int_addr', _('Internal address'));
		o.datatype = 'ip4addr';
		o.placeholder = '0.0.0.0/0';

		o = rules.option(form.Value, 'int_ports', _('Internal ports'));
		o.datatype = 'portrange';
		o.placeholder = '0-65535';

		o = rules.option(form.Value, 'ext_ports', _('External ports'));
		o.datatype = 'portrange';
		o.placeholder = '0-65535';

		o = rules.option(form.ListValue, 'action', _('Action'));
		o.value('allow', _('Allow'));
		o.value('deny', _('Deny'));
		o.default = 'deny';

		return m;
	},

	render(data) {
		const live = this.renderLive();

		return this.renderForm().render().then(formNode => {
			this.updateLive(data[0], data[1], data[2]);
			poll.add(() => this.refresh(), 5);

			return E('div', {}, [ live, formNode ]);
		});
	}
});
