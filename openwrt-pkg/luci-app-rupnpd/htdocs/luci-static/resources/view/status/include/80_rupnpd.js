'use strict';
'require baseclass';
'require rpc';

// Status overview box: the daemon's state and its current port mappings, read-only (deleting is
// done on Services → UPnP IGD & PCP/NAT-PMP).

const callStatus = rpc.declare({
	object: 'rupnpd',
	method: 'status',
	expect: { '': {} }
});

const callList = rpc.declare({
	object: 'rupnpd',
	method: 'list',
	expect: { mappings: [] }
});

const callHostHints = rpc.declare({
	object: 'luci-rpc',
	method: 'getHostHints',
	expect: { '': {} }
});

return baseclass.extend({
	title: _('UPnP IGD & PCP/NAT-PMP port mappings'),

	// A daemon that is not running makes uhttpd answer "Object not found", a rejection.
	load() {
		return Promise.all([
			L.resolveDefault(callStatus(), {}),
			L.resolveDefault(callList(), []),
			L.resolveDefault(callHostHints(), {})
		]);
	},

	render(data) {
		const status = data[0], mappings = data[1], hints = data[2];

		// Not installed or not running: no box.
		if (status.version == null)
			return null;

		const names = {};
		for (const mac in hints)
			for (const addr of L.toArray((hints[mac] || {}).ipaddrs))
				names[addr] = hints[mac].name;

		// Text nodes and escaped cells: host names come from DHCP and descriptions from LAN
		// clients, and a table cell is inserted as HTML.
		const esc = v => '%h'.format(v != null ? v : '');
		const said = [ status.enabled
			? _('External address %s, %d mappings.').format(status.external_ip || _('none reported'), +(status.mappings || {}).total || 0)
			: _('The service is switched off.') ];
		if (status.firewall == 'down')
			said.push(' ', _('The firewall is down (firewall4 is stopped): the mappings come back when it starts.'));
		const summary = E('p', {}, said);

		const table = E('table', { 'class': 'table' }, [
			E('tr', { 'class': 'tr table-titles' }, [
				E('th', { 'class': 'th' }, _('Host')),
				E('th', { 'class': 'th' }, _('Protocol')),
				E('th', { 'class': 'th' }, _('External port')),
				E('th', { 'class': 'th' }, _('Internal address')),
				E('th', { 'class': 'th' }, _('Description')),
				E('th', { 'class': 'th right' }, _('Expires'))
			])
		]);

		cbi_update_table(table, L.toArray(mappings).map(m => [
			esc(names[m.internal_ip] || _('Unknown')),
			esc(m.proto),
			esc(m.external_port),
			esc('%s:%d'.format(m.internal_ip, +m.internal_port)),
			esc(m.description),
			esc((+m.expires > 0) ? '%t'.format(+m.expires) : _('Permanent'))
		]), E('em', [ _('There are no active port mappings.') ]));

		const nodes = [ summary ];
		if (status.enabled && status.new_mappings == 'refused')
			nodes.push(E('p', { 'class': 'alert-message warning' }, [ String(status.new_mappings_reason || '') ]));
		nodes.push(table);

		return E('div', {}, nodes);
	}
});
