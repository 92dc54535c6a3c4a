// The signing dialog: the radiologist re-authenticates (password, and the authenticator code when the
// account has one) and sees what the signature means before it is applied (21 CFR 11.50 / 11.200).
// Self-contained: a modal <dialog>; resolves with { password, totp_code } or null when cancelled.
import { h } from './ui.js'

export const SIGNATURE_MEANING = 'Approved: I have reviewed the images and this report and I am responsible for its content'

export function signDialog({ reportId, version, status, signer }) {
  return new Promise((resolve) => {
    const password = h('input', {
      id: 'sign-password',
      type: 'password',
      name: 'password',
      autocomplete: 'current-password',
      required: true,
    })
    const code = h('input', {
      id: 'sign-totp',
      name: 'totp_code',
      inputmode: 'numeric',
      autocomplete: 'one-time-code',
      pattern: '[0-9]{6}',
      maxlength: 6,
      placeholder: 'only if you use an authenticator app',
    })
    const cancel = h('button', { type: 'button', value: 'cancel' }, 'Cancel')
    const submit = h('button', { type: 'submit', class: 'primary', value: 'sign' }, 'Sign report')
    const form = h(
      'form',
      { method: 'dialog', class: 'sign-form' },
      h('h2', { id: 'sign-title' }, 'Sign report'),
      h(
        'p',
        {},
        `You are signing report ${reportId}, version ${version} (${status}) as ${signer}. `,
        'A signed report can only be changed by an amendment.',
      ),
      h('p', { class: 'sign-meaning' }, h('strong', {}, 'Meaning of the signature: '), `${SIGNATURE_MEANING}.`),
      h('div', { class: 'field' }, h('label', { for: 'sign-password' }, 'Your password'), password),
      h('div', { class: 'field' }, h('label', { for: 'sign-totp' }, 'Authenticator code'), code),
      h('div', { class: 'actions' }, cancel, submit),
    )
    const dialog = h('dialog', { class: 'sign-dialog', 'aria-labelledby': 'sign-title' }, form)
    let result = null
    cancel.addEventListener('click', () => dialog.close())
    form.addEventListener('submit', (event) => {
      event.preventDefault()
      if (!password.value) return
      const totp = code.value.trim()
      result = { password: password.value, ...(totp ? { totp_code: totp } : {}) }
      dialog.close()
    })
    dialog.addEventListener('close', () => {
      password.value = ''
      dialog.remove()
      resolve(result)
    })
    document.body.append(dialog)
    dialog.showModal()
    password.focus()
  })
}
