// Users (admins only): the list with role, state and second factor; change
// a role, disable or enable, reset a password or a lost second factor,
// delete (asked first), and add a user with an initial password; invite
// links (a role, how long valid, one use), the new link shown once, revoked
// by deleting.
import { api, table, when, action, actions, el, say, onSubmit, options, badge, copyText } from './app.js';

const $ = (id) => document.getElementById(id);
const ROLES = ['viewer', 'operator', 'admin'];
const userForm = $('user-form');
const resetForm = $('reset-form');
const inviteForm = $('invite-form');
options(userForm.elements.role, ROLES);
options(inviteForm.elements.role, ROLES);

async function change(user, body, done) {
  await api('PUT', `/api/users/${encodeURIComponent(user.name)}`, body);
  say(done);
  await load();
}

function roleSelect(user) {
  const select = el('select', { 'aria-label': `Role of ${user.name}` });
  options(select, ROLES);
  select.value = user.role;
  select.addEventListener('change', async () => {
    try {
      await change(user, { role: select.value }, `${user.name} is now ${select.value}.`);
    } catch {
      select.value = user.role;
    }
  });
  return select;
}

function showReset(user) {
  resetForm.reset();
  resetForm.elements.name.value = user.name;
  $('reset-legend').textContent = `Reset the password of ${user.name}`;
  resetForm.hidden = false;
  resetForm.elements.password.focus();
}

async function load() {
  const users = await api('GET', '/api/users');
  table($('users'), {
    columns: [
      { label: 'Name', value: (u) => u.name },
      { label: 'Role', value: roleSelect },
      { label: 'State', value: (u) => (u.disabled ? 'disabled' : 'active') },
      { label: 'Two-step', value: (u) => (u.totp ? 'TOTP' : 'off') },
      { label: 'Password set', value: (u) => when(u.password_changed_at) },
      { label: 'Actions', value: (u) => actions(
        action(u.disabled ? 'Enable' : 'Disable', `${u.disabled ? 'Enable' : 'Disable'} ${u.name}`,
          () => change(u, { disabled: !u.disabled }, `${u.name} is ${u.disabled ? 'enabled' : 'disabled'}.`)),
        action('Reset password', `Reset the password of ${u.name}`, () => showReset(u)),
        u.totp ? action('Remove TOTP', `Remove the TOTP of ${u.name}`, async () => {
          if (!window.confirm(`Remove the second sign-in step of ${u.name}? They sign in with their password alone until they enrol again.`)) return;
          await api('DELETE', `/api/users/${encodeURIComponent(u.name)}/totp`);
          say(`${u.name} signs in with the password alone now.`);
          await load();
        }) : null,
        action('Delete', `Delete ${u.name}`, async () => {
          if (!window.confirm(`Delete ${u.name} with their sessions and API tokens?`)) return;
          await api('DELETE', `/api/users/${encodeURIComponent(u.name)}`);
          say(`${u.name} is deleted.`);
          await load();
        }, 'small danger'),
      ) },
    ],
    rows: users,
  });
}

onSubmit(userForm, async (v, send) => {
  await send('POST', '/api/users', { name: v.name, role: v.role, password: v.password, confirm: v.confirm });
  userForm.reset();
  say(`${v.name} is added as ${v.role}.`);
  await load();
});

onSubmit(resetForm, async (v, send) => {
  await send('POST', `/api/users/${encodeURIComponent(v.name)}/password`, { password: v.password, confirm: v.confirm });
  resetForm.hidden = true;
  say(`The password of ${v.name} is reset; their sessions have ended.`);
});
$('reset-cancel').addEventListener('click', () => { resetForm.hidden = true; });

function inviteState(invite) {
  if (invite.used_by) return badge(`used by ${invite.used_by}`);
  return badge(invite.expires_at <= Date.now() ? 'expired' : 'open');
}

async function loadInvites() {
  const invites = await api('GET', '/api/invites');
  table($('invites'), {
    columns: [
      { label: 'Invite', value: (i) => `invite ${i.id}` },
      { label: 'Role', value: (i) => i.role },
      { label: 'Made', value: (i) => `${when(i.created_at)} by ${i.created_by}` },
      { label: 'Expires', value: (i) => when(i.expires_at) },
      { label: 'State', value: inviteState },
      { label: 'Actions', value: (i) => actions(
        action(i.used_by ? 'Delete' : 'Revoke', `${i.used_by ? 'Delete' : 'Revoke'} invite ${i.id}`, async () => {
          if (!i.used_by && !window.confirm(`Revoke invite ${i.id}? Its link stops working.`)) return;
          await api('DELETE', `/api/invites/${i.id}`);
          say(i.used_by ? `Invite ${i.id} is deleted.` : `Invite ${i.id} is revoked; its link no longer works.`);
          await loadInvites();
        }, 'small danger'),
      ) },
    ],
    rows: invites,
    empty: 'No invite links.',
  });
}

onSubmit(inviteForm, async (v, send) => {
  const made = await send('POST', '/api/invites', { role: v.role, expires_hours: Number(v.expires_hours) });
  $('invite-link').value = new URL(made.link, location.origin).href;
  $('new-invite').hidden = false;
  $('invite-link').select();
  say(`Invite ${made.id} (${made.role}) is made; its link is shown once, below the form.`);
  await loadInvites();
});
$('invite-copy').addEventListener('click', async () => {
  try {
    await copyText($('invite-link').value);
    say('Copied the invite link.');
  } catch (e) {
    say(e.message, { error: true });
  }
});

load();
loadInvites();
