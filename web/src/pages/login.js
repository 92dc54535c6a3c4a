// Sign-in: e-mail and password, then the TOTP code when the account has one; a first sign-in with a
// one-time password continues with choosing a new password.
import { ApiError, post, setCsrf } from '../api.js'
import { signedIn } from '../session.js'
import { field, h } from '../ui.js'

export function loginPage(main) {
  const email = h('input', { type: 'email', name: 'email', autocomplete: 'username', required: true })
  const password = h('input', { type: 'password', name: 'password', autocomplete: 'current-password', required: true })
  const code = h('input', {
    type: 'text',
    name: 'totp',
    inputmode: 'numeric',
    autocomplete: 'one-time-code',
    pattern: '[0-9]{6}',
    maxlength: 6,
  })
  const codeField = field('Authentication code (6 digits)', code, 'From your authenticator app.')
  codeField.hidden = true
  const message = h('p', { class: 'error', role: 'alert', hidden: true })
  const button = h('button', { type: 'submit', class: 'primary' }, 'Sign in')
  const form = h(
    'form',
    { class: 'card narrow', novalidate: true },
    field('E-mail', email),
    field('Password', password),
    codeField,
    message,
    button,
  )
  form.addEventListener('submit', async (e) => {
    e.preventDefault()
    message.hidden = true
    if (!email.value || !password.value) {
      message.textContent = 'Enter your e-mail and password.'
      message.hidden = false
      return
    }
    button.disabled = true
    try {
      const body = { email: email.value.trim(), password: password.value }
      if (code.value.trim()) body.totp_code = code.value.trim() // a code typed before it was asked for is used too
      const res = await post('/api/auth/login', body, { quiet401: true })
      if (res.password_change_required || (res.user && res.user.password_change_required)) {
        changePassword(main, password.value, res)
      } else {
        await signedIn(res.user, res.csrf_token)
      }
    } catch (err) {
      if (err instanceof ApiError && err.kind === 'SecondFactorRequired') {
        codeField.hidden = false
        code.focus()
        message.textContent = codeField.dataset.asked ? err.message : 'Enter the code from your authenticator app.'
        codeField.dataset.asked = '1'
      } else {
        message.textContent = err.message
      }
      message.hidden = false
    } finally {
      button.disabled = false
    }
  })
  main.append(h('h1', {}, 'Sign in'), form)
  email.focus()
}

function changePassword(main, current, signed) {
  const pw1 = h('input', { type: 'password', autocomplete: 'new-password', required: true, minlength: 12 })
  const pw2 = h('input', { type: 'password', autocomplete: 'new-password', required: true })
  const message = h('p', { class: 'error', role: 'alert', hidden: true })
  const button = h('button', { type: 'submit', class: 'primary' }, 'Change password')
  const form = h(
    'form',
    { class: 'card narrow', novalidate: true },
    h('p', {}, 'You signed in with a one-time password. Choose your own password to continue.'),
    field('New password', pw1, 'At least 12 characters; not a common password.'),
    field('Repeat the new password', pw2),
    message,
    button,
  )
  form.addEventListener('submit', async (e) => {
    e.preventDefault()
    message.hidden = true
    if (pw1.value !== pw2.value) {
      message.textContent = 'The two passwords differ.'
      message.hidden = false
      return
    }
    button.disabled = true
    try {
      setCsrf(signed.csrf_token)
      await post('/api/auth/password', { current_password: current, new_password: pw1.value })
      await signedIn({ ...signed.user, password_change_required: false }, signed.csrf_token)
    } catch (err) {
      message.textContent = err.message
      message.hidden = false
    } finally {
      button.disabled = false
    }
  })
  main.replaceChildren(h('h1', {}, 'Choose a new password'), form)
  pw1.focus()
}
